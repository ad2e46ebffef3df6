"""Source classes by WordNet: which classes of an ImageNet-style folder lie under given
synsets (the paper's PRE-1000C-style selections), and random selections of the same size
(its PRE-1000R control).

ImageNet names a class by its WordNet noun synset, ``n`` + the 8-digit offset of the synset
in WordNet 3.0's ``data.noun`` (``n02121808``: domestic cat). A class lies under a synset
when the synset is the class's own or one of its hypernyms, through ``@`` (hypernym) and
``@i`` (instance hypernym) pointers, transitively (a synset may have several).

``data.noun``, as WordNet ships it: lines beginning with two spaces are the licence header;
every other line is a synset::

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss

with ``w_cnt`` two hexadecimal digits, ``p_cnt`` three decimal digits and each pointer
``symbol offset pos source/target``. Only the pointers to nouns (pos ``n``) with symbol
``@`` or ``@i`` are kept. A line that does not follow this layout is an error naming the
file and the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from minicnn.errors import InputError

HYPERNYM_POINTERS = ("@", "@i")
_WNID = re.compile(r"n\d{8}")
_OFFSET = re.compile(r"\d{8}")


@dataclass
class WordNet:
    """The noun synsets of a ``data.noun``: ``words[wnid]`` (the synset's words, in file
    order, underscores as in the file) and ``hypernyms[wnid]`` (the wnids its ``@`` and
    ``@i`` pointers name)."""

    path: str
    words: dict[str, tuple[str, ...]]
    hypernyms: dict[str, tuple[str, ...]]

    def __contains__(self, wnid) -> bool:
        return wnid in self.words

    def describe(self, wnid) -> str:
        """``n02121808 (domestic_cat, house_cat, ...)``."""
        return f"{wnid} ({', '.join(self.words.get(wnid, ('not in WordNet',)))})"

    def ancestors(self, wnid) -> frozenset[str]:
        """The synset and all its hypernyms, transitively (empty for an unknown wnid)."""
        memo = self._memo
        if wnid in memo:
            return memo[wnid]
        if wnid not in self.words:
            return frozenset()
        # iterative depth-first walk (hypernym chains are short, but a loop in a broken
        # file must not recurse forever)
        seen, stack = {wnid}, [wnid]
        while stack:
            current = stack.pop()
            for parent in self.hypernyms.get(current, ()):
                if parent in memo:
                    seen |= memo[parent]
                elif parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        memo[wnid] = frozenset(seen)
        return memo[wnid]

    def __post_init__(self):
        self._memo = {}


def read_data_noun(path) -> WordNet:
    """Parse WordNet's ``data.noun`` (see the module docstring)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such WordNet file (data.noun; Debian's wordnet-base installs "
                         "/usr/share/wordnet/data.noun)") from None
    except UnicodeDecodeError:
        try:  # WordNet 3.0 is ASCII; other builds may be Latin-1
            with open(path, encoding="latin-1") as f:
                text = f.read()
        except OSError as e:
            raise InputError(f"{path}: cannot read WordNet file ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read WordNet file ({e})") from None
    words, hypernyms = {}, {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("  ") or not line.strip():
            continue  # licence header, blank line
        where = f"{path}, line {lineno}"
        head, bar, _gloss = line.partition("|")
        fields = head.split()
        if len(fields) < 4:
            raise InputError(f"{where}: not a synset line (offset lex_filenum ss_type w_cnt ...)")
        offset, _lex, ss_type, w_hex = fields[:4]
        if not _OFFSET.fullmatch(offset):
            raise InputError(f"{where}: synset offset {offset!r} is not 8 digits")
        try:
            w_cnt = int(w_hex, 16)
        except ValueError:
            raise InputError(f"{where}: word count {w_hex!r} is not hexadecimal") from None
        i = 4 + 2 * w_cnt
        if w_cnt < 1 or len(fields) < i + 1:
            raise InputError(f"{where}: {w_cnt} words announced, the line has fewer")
        synset_words = tuple(fields[4:i:2])
        try:
            p_cnt = int(fields[i])
        except ValueError:
            raise InputError(f"{where}: pointer count {fields[i]!r} (after {w_cnt} words) is not a "
                             "number") from None
        pointers = fields[i + 1: i + 1 + 4 * p_cnt]
        if len(pointers) < 4 * p_cnt:
            raise InputError(f"{where}: {p_cnt} pointers announced, the line has fewer")
        if ss_type != "n":
            continue  # a data.noun holds nouns only; a stray line of another kind is not one
        parents = []
        for k in range(0, len(pointers), 4):
            symbol, target, pos = pointers[k: k + 3]
            if not _OFFSET.fullmatch(target):
                raise InputError(f"{where}: pointer {k // 4 + 1} names offset {target!r}, not 8 digits")
            if symbol in HYPERNYM_POINTERS and pos == "n":
                parents.append("n" + target)
        wnid = "n" + offset
        if wnid in words:
            raise InputError(f"{where}: synset {offset} is given twice")
        words[wnid] = synset_words
        hypernyms[wnid] = tuple(dict.fromkeys(parents))
    if not words:
        raise InputError(f"{path}: no synset lines (is it WordNet's data.noun?)")
    return WordNet(path, words, hypernyms)


def is_wnid(name: str) -> bool:
    return _WNID.fullmatch(name) is not None


def folder_classes(root) -> list[str]:
    """The class folders of an image-folder root (``root/<class>/``), sorted, as
    :func:`minicnn.data.folders.read_folder` numbers them."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"--from {root}: image folder does not exist")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise InputError(f"--from {root}: no class folders (expected root/<class>/<image>)")
    return classes


def classes_under(wordnet: WordNet, classes, roots) -> tuple[list[str], dict[str, list[str]]]:
    """(the classes under any of ``roots``, sorted; {root: its classes}). Every root must
    be a synset of ``wordnet``."""
    for root in roots:
        if not is_wnid(root):
            raise InputError(f"--under {root!r}: a synset is written n + 8 digits (n03405725)")
        if root not in wordnet:
            raise InputError(f"--under {root}: no such synset in {wordnet.path}")
    per_root = {root: [] for root in roots}
    chosen = []
    for cls in classes:
        ancestors = wordnet.ancestors(cls)
        hits = [root for root in roots if root in ancestors]
        for root in hits:
            per_root[root].append(cls)
        if hits:
            chosen.append(cls)
    return chosen, per_root


def random_classes(classes, n: int, seed: int) -> list[str]:
    """``n`` of ``classes`` chosen by ``seed`` (without repeats), sorted."""
    classes = sorted(classes)
    if not 1 <= n <= len(classes):
        raise InputError(f"--random {n}: choose between 1 and the {len(classes)} classes of the folder")
    picked = np.random.default_rng(seed).choice(len(classes), size=n, replace=False)
    return sorted(classes[i] for i in picked)
