"""Train a source network on a labelled image-folder set (root/<class>/<image>).

Krizhevsky's recipe (METHOD.md section 2), scaled by arguments: SGD with momentum 0.9,
weight decay 5e-4, learning rate divided by 10 when the validation error stops
improving; random crops and flips for training, centre crops for validation, per-channel
mean subtracted and standard deviation divided out. Prints validation top-1/top-5 after
each epoch and writes an atomic checkpoint (--resume continues it). The result,
OUT/source.npz, carries its class list, input size, mean and standard deviation, and is
what `minicnn transfer --weights` takes.

Examples:
  minicnn pretrain --data ILSVRC2012/train --out runs/pre1000 --backend cpu
  minicnn pretrain --data cifar10/train --out runs/cifar --model small --input-size 32 --epochs 20
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--data", required=True, help="image-folder root: one sub-folder of images per class")
    p.add_argument("--out", required=True, help="output folder (checkpoint.npz, source.npz)")
    p.add_argument("--list", default=None, help="optional list file of <class>/<image> paths to use")
    p.add_argument("--model", choices=("alexnet", "small"), default="alexnet",
                   help="alexnet: Krizhevsky's sizes (input 224 or 227); small: the same layers, narrower, "
                        "for small images (default alexnet)")
    p.add_argument("--input-size", type=int, default=None, help="network input (default 227; small: 32)")
    p.add_argument("--resize", type=int, default=None,
                   help="shorter side before cropping (default 256 for 224/227 inputs, "
                        "else input * 256 / 224)")
    p.add_argument("--groups", type=int, choices=(1, 2), default=2, help="conv2/4/5 groups (default 2)")
    p.add_argument("--channels", default=None,
                   help="conv widths, comma-separated (default 96,256,384,384,256; small: 32,64,96,96,64)")
    p.add_argument("--hidden", type=int, default=None, help="FC6/FC7 width (default 4096; small: 256)")
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="held-out fraction per class (default 0.1)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    p.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and reported)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")


def run(args):
    import minicnn as mc
    from minicnn.transfer.pretrain import PretrainSettings, pretrain

    mc.set_backend(args.backend)
    small = args.model == "small"
    settings = PretrainSettings(
        model=args.model, input_size=args.input_size or (32 if small else 227), resize=args.resize,
        groups=args.groups,
        channels=tuple(int(c) for c in args.channels.split(",")) if args.channels
        else ((32, 64, 96, 96, 64) if small else (96, 256, 384, 384, 256)),
        hidden=args.hidden or (256 if small else 4096), epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, val_fraction=args.val_fraction, workers=args.workers,
        seed=args.seed)
    if len(settings.channels) != 5:
        raise ValueError(f"--channels needs 5 widths, got {args.channels!r}")
    result = pretrain(args.data, args.out, settings, list_file=args.list, skip_bad=args.skip_bad,
                      resume=args.resume)
    print(f"source network: {result['weights']} ({len(result['classes'])} classes)")
    return 0
