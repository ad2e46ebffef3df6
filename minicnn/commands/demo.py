"""Run the main job on generated data: pretrain, transfer, compare with training from scratch.

Generates the default dataset (a source set of 30 object classes and a VOC-format target
set of 10 other classes built from the same parts and textures), pretrains a small
AlexNet-style network on the source set, transfers C1..FC7 to the target set through
FCa/FCb trained on multi-scale patches, trains the same network from scratch on the
target patches, and scores the whole-image baseline. Prints the per-class AP table and
writes OUT/summary.json, OUT/report.md, plots and heat maps. A second run reuses what the
first left (data, checkpoints, feature caches); --fresh starts over.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--out", default="runs/demo", help="output folder")
    from minicnn.backend import BACKENDS

    p.add_argument("--backend", default="cpu", choices=BACKENDS,
                   help="backend (cpu: the Numba kernels)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the generated data, the pretraining and the transfers")
    p.add_argument("--quick", action="store_true", help="a tiny run of every stage (seconds)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: train again instead of reusing the checkpoints of an earlier run "
                        "(a second run with the same settings reuses them; other settings into the "
                        "same folder are refused unless --fresh)")


def run(args):
    from dataclasses import replace

    import minicnn as mc
    from minicnn.demo import DemoSettings, run_demo

    mc.set_backend(args.backend)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    settings = replace(settings, data=replace(settings.data, seed=args.seed),
                       pretrain=replace(settings.pretrain, seed=args.seed),
                       transfer=replace(settings.transfer,
                                        train=replace(settings.transfer.train, seed=args.seed)))
    from dataclasses import asdict

    from minicnn.runrecord import open_run

    record = open_run(args.out, "demo", {**asdict(settings), "backend": args.backend}, resume=not args.fresh,
                      fresh=args.fresh)
    summary = run_demo(args.out, settings, record, resume=not args.fresh)
    if summary is None:  # a rank other than 0 under MPI: rank 0 reports
        return 0
    record.finish({"map": summary["map"], "pretrain": summary["pretrain"]})
    from minicnn.report_html import write_report_html  # report.html beside report.md
    write_report_html(args.out)
    maps = ", ".join(f"{k} {100 * v:.2f}" for k, v in summary["map"].items() if v is not None)
    print(f"mAP (%): {maps}; {summary['seconds']:.0f} s; report: {args.out}/report.md")
    return 0
