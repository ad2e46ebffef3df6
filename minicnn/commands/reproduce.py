"""Run a paper table or a claim from a TOML config: every stage, then a report with intervals.

The config names the data (a VOCdevkit tree, or the generated dataset), the source
networks (pretrain settings, or a network imported with `minicnn import-weights`), the
transfer settings, the runs (variants and their settings), the seeds and the paper's numbers
to compare with. Every stage resumes. Writes OUT/report.md, OUT/report.json (per run and
class: AP averaged over seeds, a 95% bootstrap interval over test items, the spread over
seeds, the paper's number) and OUT/plots/. See experiments/configs/ for the paper's tables
(VOC 2007 and 2012, the action task: they run when you bring ImageNet and VOC) and the
claims on generated data.

Examples:
  minicnn reproduce experiments/configs/claims_generated.toml --out runs/claims
  minicnn reproduce experiments/configs/voc2007_table1.toml --quick --out /tmp/check
"""

from __future__ import annotations


def add_arguments(p):
    from minicnn.backend import BACKENDS
    from minicnn.cli import BACKEND_HELP

    p.add_argument("config", help="TOML config (see experiments/configs/)")
    p.add_argument("--out", required=True, help="output folder (every run's folder, report.md, report.json)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and one epoch: checks every stage in seconds")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help=BACKEND_HELP)
    p.add_argument("--fresh", action="store_true",
                   help="start over (a second run with the same config reuses what the first computed)")


def run(args):
    import minicnn as mc
    from minicnn.reproduce import read_config, run_reproduce
    from minicnn.runrecord import open_run

    config = read_config(args.config, quick=args.quick)  # every setting checked before any work
    mc.set_backend(args.backend)
    record = open_run(args.out, "reproduce", {"config": config, "quick": args.quick, "backend": args.backend},
                      inputs=[args.config], resume=not args.fresh, fresh=args.fresh)
    report = run_reproduce(config, args.out, record)
    for name, r in report["runs"].items():
        paper = f" (paper {r['paper']['map']})" if "map" in r["paper"] else ""
        record.log(f"{name}: mAP {r['map']:.1f}{paper}" if r["map"] is not None else f"{name}: not evaluated")
    record.finish({name: r["map"] for name, r in report["runs"].items()})
    record.log(f"report: {args.out}/report.md")
    from minicnn.report_html import write_report_html  # report.html beside report.md
    write_report_html(args.out)
    return 0
