"""Train a source network on a labelled image-folder set (root/<class>/<image>).

Krizhevsky's recipe (docs/method.md section 2), scaled by arguments: SGD with momentum 0.9,
weight decay 5e-4, learning rate divided by 10 when the validation error stops
improving; random crops and flips for training, centre crops for validation, per-channel
mean subtracted and standard deviation divided out. Prints validation top-1/top-5 after
each epoch and writes an atomic checkpoint (--resume continues it). The result,
OUT/source.npz, carries its class list, input size, mean and standard deviation, and is
what `minicnn transfer --weights` takes. --classes FILE trains on the classes a class-list
file names only (e.g. a selection of `minicnn source-classes`).

Examples:
  minicnn pretrain --data ILSVRC2012/train --out runs/pre1000 --backend cpu
  minicnn pretrain --data cifar10/train --out runs/cifar --model small --input-size 32 --epochs 20
"""

from __future__ import annotations


def add_arguments(p):
    from minicnn.backend import BACKENDS
    from minicnn.cli import BACKEND_HELP, SEED_HELP
    from minicnn.pretrain import MODEL_DEFAULTS, MODELS, PretrainSettings
    from minicnn.training import add_sgd_arguments

    d = PretrainSettings()
    small = MODEL_DEFAULTS["small"]
    p.add_argument("--data", required=True, help="image-folder root: one sub-folder of images per class")
    p.add_argument("--out", required=True, help="output folder (checkpoint.npz, source.npz, history.csv)")
    p.add_argument("--list", default=None, help="optional list file of <class>/<image> paths to use")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class-list file (one class a line, e.g. from `minicnn source-classes`): train on "
                        "these classes of --data only, numbered in the file's order")
    p.add_argument("--model", choices=MODELS, default=d.model,
                   help="alexnet: Krizhevsky's sizes (input 224 or 227); small: the same layers, narrower, "
                        "for small images")
    p.add_argument("--input-size", type=int, default=None,
                   help=f"network input (default {d.input_size}; small: {small['input_size']})")
    p.add_argument("--resize", type=int, default=None,
                   help="shorter side before cropping, >= the input size (default 256 for 224/227 inputs, "
                        "else input * 256 / 224)")
    p.add_argument("--groups", type=int, choices=(1, 2), default=d.groups,
                   help="conv2/4/5 groups")
    p.add_argument("--channels", default=None,
                   help=f"conv widths, 5 comma-separated integers >= 1 (default {_csv(d.channels)}; "
                        f"small: {_csv(small['channels'])})")
    p.add_argument("--hidden", type=int, default=None,
                   help=f"FC6/FC7 width (default {d.hidden}; small: {small['hidden']})")
    add_sgd_arguments(p, d)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="held-out fraction per class")
    p.add_argument("--workers", type=int, default=d.workers, help="decoding threads")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help=BACKEND_HELP)
    p.add_argument("--seed", type=int, default=d.seed, help=SEED_HELP)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and reported)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its last checkpoint (same settings and data)")
    p.add_argument("--fresh", action="store_true", help="start over in an OUT that holds a run")


def _csv(values):
    return ",".join(str(v) for v in values)


def run(args):
    import os

    import minicnn as mc
    from minicnn.errors import InputError
    from minicnn.pretrain import PretrainSettings, pretrain

    channels = None
    if args.channels:
        try:
            channels = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise InputError(f"--channels must be 5 comma-separated integers, "
                             f"got {args.channels!r}") from None
    settings = PretrainSettings(  # every setting checked before any work
        model=args.model, input_size=args.input_size, resize=args.resize, groups=args.groups,
        channels=channels, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, val_fraction=args.val_fraction, workers=args.workers,
        seed=args.seed, batch_parts=args.batch_parts)
    from dataclasses import asdict

    from minicnn.data.folders import read_class_list
    from minicnn.pretrain import source_data
    from minicnn.runrecord import open_run

    mc.set_backend(args.backend)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out} is a file; name a folder")
    classes = None
    if args.classes is not None:
        if os.path.isdir(args.classes) or not os.path.exists(args.classes):
            raise InputError(f"--classes {args.classes}: no such class-list file")
        classes = read_class_list(args.classes)
        if len(set(classes)) != len(classes):
            twice = next(c for c in classes if classes.count(c) > 1)
            raise InputError(f"--classes {args.classes}: class {twice!r} is listed twice")
    # before the record is written
    data = source_data(args.data, settings, args.list, args.skip_bad, classes=classes)
    recorded = {**asdict(settings), "data": os.path.abspath(args.data), "skip_bad": args.skip_bad,
                "backend": args.backend, "list": args.list and os.path.abspath(args.list),
                "classes": args.classes and os.path.abspath(args.classes)}
    record = open_run(args.out, "pretrain", recorded,
                      inputs=[p for p in (args.list, args.classes) if p], resume=args.resume,
                      fresh=args.fresh, outputs=("checkpoint.npz", "source.npz"))
    with record.stage("pretrain"):
        result = pretrain(args.data, args.out, settings, list_file=args.list, skip_bad=args.skip_bad,
                          resume=args.resume, log=record.log, data=data)
    for item, reason in result["skipped"]:
        record.skip(item, reason)
    record.data(root=os.path.abspath(args.data), classes=len(result["classes"]), **result["images"])
    last = result["history"][-1]
    record.finish({"weights": result["weights"], "epochs": last["epoch"], "loss": last["loss"],
                   "val_top1": last.get("val_top1"), "val_top5": last.get("val_top5")})
    record.log(f"source network: {result['weights']} ({len(result['classes'])} classes)")
    return 0
