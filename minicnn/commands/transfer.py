"""Transfer a source network to a VOC-format target set (docs/method.md sections 3-6).

Samples ~500 multi-scale square patches per image, labels them from the boxes (0.2/0.6
rule, background, discarded), trains the adaptation layers FCa/FCb (or more, by variant)
with a fresh 10% of the background each epoch, validates on a held-out part of trainval
every epoch, scores the test images as the mean of p^k over their patches, writes
comp1 submission files and prints the VOC AP table.

The source may be any network (an AlexNet from minicnn pretrain, a SqueezeNet from minicnn
import-weights...): --cut names the layer whose output is transferred (fc7 for an AlexNet),
averaged over space when it is a map. Variants: frozen (FCa/FCb on cached features of the cut;
the paper's method), update-top (the --update layers trained too, from cached features of the
layer below them; update-fc67 is FC6 and FC7 of an AlexNet), finetune (all layers), scratch
(same architecture, random initialisation), whole-image (one patch per image: the baseline).

--task action (docs/method.md 7) does the same for the persons of ImageSets/Action: the person
box plays the object box with its action as class, and each test person is scored from
the patches that satisfy both overlap rules for its box; comp9 files, action AP.

Examples:
  minicnn transfer --voc VOCdevkit --year 2007 --weights runs/pre1000/source.npz --out runs/t07
  minicnn transfer --voc VOCdevkit --year 2012 --task action --variant update-fc67 \\
      --train-set train --test-set val --weights runs/pre1000/source.npz --out runs/a12
"""

from __future__ import annotations


def add_arguments(p):
    from minicnn.backend import BACKENDS
    from minicnn.cli import BACKEND_HELP, SEED_HELP
    from minicnn.training import add_sgd_arguments
    from minicnn.transfer.pipeline import AUTO_FLOAT16_BYTES, CACHE_DTYPES, TASKS, VARIANTS, TransferSettings
    from minicnn.transfer.train import BALANCES

    d = TransferSettings()
    t = d.train
    p.add_argument("--voc", required=True, help="VOCdevkit root (holding VOC<year>/)")
    p.add_argument("--year", type=int, default=2007, help="dataset year: VOC<year>/ under --voc")
    p.add_argument("--weights", required=True, help="source network (.npz from minicnn pretrain)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, results, summary.json)")
    p.add_argument("--variant", choices=VARIANTS, default=d.variant,
                   help="frozen: the method (FCa/FCb on cached features of --cut); update-top: the "
                        "layers named by --update trained too (update-fc67: FC6 and FC7, its AlexNet "
                        "name); finetune: every layer; scratch: the same architecture from a random "
                        "start; whole-image: the whole image as one patch")
    p.add_argument("--cut", default=None,
                   help="the source layer whose output is the transferred representation, a map "
                        "averaged over space (default: fc7 for an AlexNet, otherwise the last layer with "
                        "parameters before the classifier, fire9 for a SqueezeNet)")
    p.add_argument("--update", default=None,
                   help="comma-separated layers that --variant update-top trains (default: fc6,fc7 for "
                        "an AlexNet, otherwise the --cut layer)")
    p.add_argument("--classes", default=None,
                   help="comma-separated target classes (default: those with "
                        "ImageSets/Main/<class>_<set>.txt files, or the 20 VOC classes; with "
                        "--task action, the 10 VOC actions)")
    p.add_argument("--task", choices=TASKS, default=d.task,
                   help="cls: object classes (ImageSets/Main, comp1); action: the persons of "
                        "ImageSets/Action with their action as class, each scored from the patches "
                        "on its box (VOC 2012, comp9)")
    p.add_argument("--train-set", default=d.train_split,
                   help="image set trained on (ImageSets/Main/<set>.txt; Action with --task action)")
    p.add_argument("--test-set", default=d.test_split, help="image set scored and evaluated")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="part of the training set held out for per-epoch validation mAP, which also "
                        "drives the learning-rate schedule (0: train on all of it, "
                        "no validation, constant learning rate)")
    add_sgd_arguments(p, t)
    p.add_argument("--hidden", type=int, default=d.hidden, help="FCa width")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout after FCa")
    p.add_argument("--background", type=float, default=t.background_fraction,
                   help="fraction of background patches kept each epoch")
    p.add_argument("--balance", choices=BALANCES, default=t.balance,
                   help="resample: a fresh draw of the background each epoch; reweight: every "
                        "background patch, weighted by --background")
    p.add_argument("-k", type=float, default=t.k,
                   help="power of the aggregation mean(p^k), > 0")
    p.add_argument("--stride", type=float, default=d.stride_fraction,
                   help="patch grid stride as a fraction of the side, in (0, 0.5] "
                        "(the paper's ~500 patches per 500x375 image)")
    p.add_argument("--scales", default=",".join(f"{s:g}" for s in d.scales),
                   help="comma-separated lambdas, each >= 1")
    p.add_argument("--metric", choices=("voc07", "area"), default=None,
                   help="AP metric (default: the year's, voc07 up to 2009)")
    p.add_argument("--crop-on-device", action="store_true",
                   help="backend cuda: upload each image once and cut its patches on the GPU (the same "
                        "pixels as on the host; frees the host's cores)")
    p.add_argument("--cache-dtype", choices=CACHE_DTYPES, default=d.cache_dtype,
                   help="feature cache precision (auto: float16 when the float32 cache would "
                        f"exceed {AUTO_FLOAT16_BYTES / 1e9:.3g} GB; it measured the same mAP as float32)")
    p.add_argument("--cache", default=None, help="feature cache folder (default OUT/cache)")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help=BACKEND_HELP)
    p.add_argument("--seed", type=int, default=t.seed, help=SEED_HELP)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its last checkpoint (same settings and source)")
    p.add_argument("--fresh", action="store_true", help="start over in an OUT that holds a run")
    p.add_argument("--clip-boxes", action="store_true",
                   help="clip annotation boxes reaching outside their image (counted in run.json) "
                        "instead of refusing them")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave unreadable training images out (counted in OUT/run.json); without it every "
                        "unreadable image is named before any work starts")


def settings_from_args(args):
    from minicnn.errors import InputError
    from minicnn.evaluate import default_metric
    from minicnn.transfer.pipeline import TransferSettings
    from minicnn.transfer.train import TrainSettings

    try:
        scales = tuple(float(s) for s in args.scales.split(","))
    except ValueError:
        raise InputError(f"--scales must be comma-separated numbers, got {args.scales!r}") from None
    train = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, background_fraction=args.background,
                          balance=args.balance, k=args.k, metric=args.metric or default_metric(args.year),
                          seed=args.seed, batch_parts=args.batch_parts)
    update = None if args.update is None else tuple(n.strip() for n in args.update.split(",") if n.strip())
    return TransferSettings(
        variant=args.variant, cut=args.cut, update=update,
        task=args.task, hidden=args.hidden, dropout=args.dropout,
        val_fraction=args.val_fraction, train_split=args.train_set, test_split=args.test_set,
        scales=scales, stride_fraction=args.stride, cache_dtype=args.cache_dtype,
        crop_on_device=args.crop_on_device, train=train)


def run(args):
    import os
    import time
    from dataclasses import asdict

    import minicnn as mc
    from minicnn.errors import InputError
    from minicnn.report import ap_table
    from minicnn.runrecord import open_run
    from minicnn.transfer.patchset import check_classes
    from minicnn.transfer.pipeline import Transfer, load_source

    settings = settings_from_args(args)  # every setting checked before any work
    mc.set_backend(args.backend)
    source = load_source(args.weights)
    classes = args.classes.split(",") if args.classes else None
    everything = {**asdict(settings), "voc": os.path.abspath(args.voc), "year": args.year, "classes": classes,
                  "backend": args.backend, "cache": args.cache, "skip_bad": args.skip_bad,
                  "clip_boxes": args.clip_boxes}
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out} is a file; name a folder")
    # the data checked (classes, annotations, every image's header) before the record is written
    said, started = [], time.perf_counter()
    run = Transfer(args.voc, args.year, source, args.out, settings, classes=classes,
                   cache_root=args.cache, log=said.append, skip_bad=args.skip_bad, clip_boxes=args.clip_boxes)
    # refused before the record: a class the user named that no training patch shows (or no
    # learnable class at all, or a validation part without positives)
    check_classes(run.patches, run.classes, settings.train_split, settings.test_split, named=bool(classes),
                  refuse=True)
    run.check_cache_space()
    record = open_run(args.out, "transfer", everything, inputs=[args.weights], resume=args.resume,
                      fresh=args.fresh, outputs=("checkpoint.npz", "transfer.npz"))
    record["seconds"]["patches"] = round(time.perf_counter() - started, 3)
    for line in said:
        record.log(line)
    run.log = record.log
    for item, reason in run.skipped:
        record.skip(item, reason)
    p = run.patches
    images = {name: len(ids) for name, ids in p.split_images.items()}
    record.data(root=os.path.abspath(args.voc), images=images,
                patches=len(p.patch_labels), classes=len(run.classes), clipped_boxes=run.dataset.clipped)
    if run.dataset.clipped:
        record.log(f"warning: {run.dataset.clipped} annotation boxes reached outside their image and were "
                   "clipped to it (--clip-boxes)")
    result = run.run(resume=args.resume, stage=record.stage)
    if result.report is not None:
        record.log(ap_table({args.variant: result.summary}, run.classes, metric=settings.train.metric))
    record.finish({"map": result.summary.get("map"), "ap": result.summary.get("ap"),
                   "results": result.summary["results"]})
    record.log(f"results: {result.summary['results']}; summary: {args.out}/summary.json")
    from minicnn.report_html import write_report_html  # report.html beside report.md
    write_report_html(args.out)
    return 0
