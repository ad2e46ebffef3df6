"""Write the browser report (report.html) of an existing run folder.

Reads what the run left in RUN_DIR (run.json, summary.json or report.json, the plots and
heat maps, report.md) and writes RUN_DIR/report.html: one self-contained page with the
settings and inputs, the results, the per-class AP table (sortable), and every figure
embedded. demo, transfer, localize and reproduce write it at the end of a run; this
command writes it again, for a run made before, or after its files changed.

  minicnn report runs/demo
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder of a run (it holds run.json)")


def run(args):
    import os

    from minicnn.errors import InputError
    from minicnn.report_html import write_report_html

    if not os.path.isdir(args.run_dir):
        raise InputError(f"{args.run_dir}: no such folder")
    path = write_report_html(args.run_dir)
    print(f"report: {path}")
    return 0
