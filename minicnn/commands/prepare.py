"""Resize an image folder once for pretraining (shorter side 256, JPEG), keeping its tree.

Every image under --data (root/<class>/<image>, any depth) is decoded in its display
orientation, resized so that its shorter side is exactly --short-side (aspect ratio kept;
a JPEG is decoded at reduced scale first when it is at least twice as large) and written
as a JPEG of --quality under the same relative path in --out (extension .jpg). A JPEG
already of that size is copied as it is. Outputs are written atomically and get their
source's modification time: an image whose output is there is skipped, so --resume after a
kill (or a second run) continues with what is left and rewrites nothing; --fresh makes
every image again. Unreadable images are all named before any work; --skip-bad leaves them
out and lists them in OUT/run.json. OUT/run.json and OUT/log.txt record the run.

Examples:
  minicnn prepare --data ILSVRC2012/train --out ILSVRC2012/train256
  minicnn prepare --data ILSVRC2012/train --out ILSVRC2012/train256 --resume --skip-bad
  minicnn pretrain --data ILSVRC2012/train256 --out runs/pre1000
"""

from __future__ import annotations


def add_arguments(p):

    from minicnn.data.prepare import POOLS

    p.add_argument("--data", required=True, help="source image folder (root/<class>/<image>)")
    p.add_argument("--out", required=True, help="output folder: the same tree, resized JPEGs")
    p.add_argument("--short-side", type=int, default=256,
                   help="shorter side of the outputs")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100")
    p.add_argument("--workers", type=int, default=None,
                   help="images resized at once (default: the CPU count)")
    p.add_argument("--pool", choices=POOLS, default="process",
                   help="workers are processes (the same work per CPU-second as threads on 2 "
                        "cores, and nothing holds a GIL on many) or threads")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out (listed in run.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run recorded in --out (images already written are skipped)")
    p.add_argument("--fresh", action="store_true", help="make every image again in an --out that holds a run")


def run(args):
    import os

    from minicnn.data.prepare import plan_folder, run_plan
    from minicnn.errors import InputError
    from minicnn.runrecord import RECORD_NAME, RunRecord

    # every setting checked before any work and before the record is written
    if args.short_side < 1:
        raise InputError(f"--short-side must be at least 1, got {args.short_side}")
    if not 1 <= args.quality <= 100:
        raise InputError(f"--quality must be in 1..100, got {args.quality}")
    if args.workers is None:
        args.workers = os.cpu_count() or 1
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if not os.path.isdir(args.data):
        raise InputError(f"--data {args.data}: no such folder")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {args.out} is a file; name a folder")
    if os.path.realpath(out) == os.path.realpath(args.data):
        raise InputError(f"--out {args.out} is the source folder; name another one")
    if (os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, RECORD_NAME))
            and not (args.resume or args.fresh)):
        raise InputError(f"--out {args.out} holds files but no run of `minicnn prepare`; pass --resume to "
                         "keep the outputs that are newer than their source, or --fresh to make every image "
                         "again")
    # the images and their headers, before the record is written (all bad ones named at once)
    plan = plan_folder(args.data, out, args.short_side, args.quality, skip_bad=args.skip_bad,
                       redo=args.fresh, workers=args.workers)
    settings = {"data": os.path.abspath(args.data), "short_side": args.short_side, "quality": args.quality,
                "workers": args.workers, "pool": args.pool, "skip_bad": args.skip_bad}
    record = RunRecord(out, "prepare", settings, resume=args.resume, fresh=args.fresh,
                       may_change=("workers", "pool", "skip_bad"))
    with record.stage("prepare"):
        result = run_plan(plan, workers=args.workers, pool=args.pool, skip_bad=args.skip_bad, log=record.log,
                          on_bad=record.skip)
    record.data(images=result.images, bad=len(result.bad), ignored=result.ignored)
    record.finish({"written": result.written, "copied": result.copied, "done_before": result.done_before,
                   "bad": len(result.bad), "removed_tmp": result.removed_tmp})
    bad = f", {len(result.bad)} unreadable left out (listed in run.json)" if result.bad else ""
    record.log(f"prepare: {result.written} resized, {result.copied} copied, {result.done_before} already "
               f"done{bad}; {out}")
    return 0
