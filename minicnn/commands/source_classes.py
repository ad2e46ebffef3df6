"""Choose source classes of an ImageNet-style folder by WordNet synsets, or at random.

--under lists the classes of --from (folders named by WordNet noun ids, n########) that lie
under any of the given synsets: the synset itself or one of its hypernyms, transitively,
through WordNet's @ (hypernym) and @i (instance hypernym) pointers in --wordnet (WordNet
3.0's data.noun; Debian's wordnet-base installs /usr/share/wordnet/data.noun). It prints
how many classes each synset gives, with its words, and the total (a class under two
synsets counts once). --random N --seed S instead chooses N classes of --from at random,
the paper's PRE-1000R control for a chosen set; --random same takes N from the --under
selection. The list (one class a line, sorted) is written atomically to --out, which
`minicnn pretrain --classes` takes (docs/method.md section 10, claim 4).

Examples:
  minicnn source-classes --wordnet /usr/share/wordnet/data.noun --from ILSVRC2012/train \\
      --under n03405725 n02370806 --out furniture+ungulates.txt
  minicnn source-classes --wordnet /usr/share/wordnet/data.noun --from ILSVRC2012/train \\
      --under n03405725 n02370806 --random same --seed 1 --out random-control.txt
"""

from __future__ import annotations


def _count(text):
    import argparse

    if text == "same":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of classes or 'same', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 class, got {value}")
    return value


def add_arguments(p):
    p.add_argument("--from", dest="root", required=True, metavar="ROOT",
                   help="image-folder root: one folder per class, named by its WordNet id (n02121808)")
    p.add_argument("--out", required=True, metavar="FILE", help="class-list file to write (one class a line)")
    p.add_argument("--wordnet", default=None, metavar="DATA_NOUN",
                   help="WordNet's data.noun (needed with --under)")
    p.add_argument("--under", nargs="+", default=None, metavar="WNID",
                   help="synsets (n########): the classes under any of them are listed")
    p.add_argument("--random", type=_count, default=None, metavar="N",
                   help="choose N classes of ROOT at random instead ('same': as many as --under gives)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random")


def run(args):
    import os

    from minicnn.data.folders import write_class_list
    from minicnn.data.wordnet import classes_under, folder_classes, is_wnid, random_classes, read_data_noun
    from minicnn.errors import InputError

    if args.under is None and args.random is None:
        raise InputError("give --under WNID... (classes under WordNet synsets) or --random N")
    if args.random == "same" and args.under is None:
        raise InputError("--random same takes the size of the --under selection; give --under too")
    if args.under is not None and args.wordnet is None:
        raise InputError("--under needs --wordnet (WordNet's data.noun)")
    if os.path.isdir(args.out):
        raise InputError(f"--out {args.out} is a folder; name a file")
    classes = folder_classes(args.root)
    chosen = None
    if args.under is not None:
        wordnet = read_data_noun(args.wordnet)
        chosen, per_root = classes_under(wordnet, classes, list(dict.fromkeys(args.under)))
        for root, found in per_root.items():
            print(f"{wordnet.describe(root)}: {len(found)} classes")
        unknown = [c for c in classes if c not in wordnet]
        if unknown:
            named = [c for c in unknown if is_wnid(c)]
            print(f"warning: {len(unknown)} of the {len(classes)} class folders are not WordNet noun synsets "
                  f"(first: {unknown[0]}{'' if named else '; folders are named n + 8 digits'})")
        print(f"total: {len(chosen)} of the {len(classes)} classes of {args.root} lie under "
              f"{'the synset' if len(per_root) == 1 else f'the {len(per_root)} synsets'}")
        if not chosen:
            raise InputError(f"no class of {args.root} lies under {' '.join(per_root)}; nothing written")
    if args.random is not None:
        n = len(chosen) if args.random == "same" else args.random
        chosen = random_classes(classes, n, args.seed)
        print(f"random: {n} of the {len(classes)} classes of {args.root} (seed {args.seed})")
    path = write_class_list(args.out, chosen)
    print(f"wrote {len(chosen)} classes to {path}")
    return 0
