"""``minicnn <command>``: the command-line interface.

Each command lives in the module that implements it, as two functions:
``add_arguments(parser)`` and ``run(args) -> int``; the module docstring's first line is
its one-line help and the rest its description. A user error (``minicnn.errors.InputError``:
a bad file, setting or data, or ``BackendUnavailable``) prints one line and exits with code
2; set MINICNN_DEBUG=1 to see its traceback. Any other exception is a bug and shows its
traceback.

Under MPI (``mpiexec -n N minicnn ...``, see ``minicnn.distributed``) a rank that fails
prints its message and ends every rank of the job (``MPI_Abort``), with exit code 2 for a
user error, so that no rank waits for ever for one that has stopped. A refusal that every
rank reaches together (ranks started with different settings) is printed once, by rank 0,
and every rank exits with code 2, without an abort.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from minicnn import distributed
from minicnn.backend import BackendUnavailable
from minicnn.errors import InputError, JobInputError
from minicnn.runrecord import package_version

# command -> module that implements it (imported only when the command runs)
COMMANDS = {
    "bench": "minicnn.commands.bench",
    "convert": "minicnn.commands.convert",
    "demo": "minicnn.commands.demo",
    "evaluate": "minicnn.commands.evaluate",
    "export-onnx": "minicnn.commands.export_onnx",
    "gradcheck": "minicnn.commands.gradcheck",
    "import-weights": "minicnn.commands.import_weights",
    "localize": "minicnn.commands.localize",
    "make-data": "minicnn.commands.make_data",
    "prepare": "minicnn.commands.prepare",
    "pretrain": "minicnn.commands.pretrain",
    "report": "minicnn.commands.report",
    "reproduce": "minicnn.commands.reproduce",
    "source-classes": "minicnn.commands.source_classes",
    "transfer": "minicnn.commands.transfer",
}


BACKEND_HELP = "numpy: the NumPy reference; cpu: the Numba CPU kernels; cuda: the numba.cuda GPU kernels"
SEED_HELP = "random seed (of the weights' initialisation, the data order and the sampling)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """How every command's --help reads: the description's line breaks kept (its examples),
    and each option's default appended from the code, "(default: X)", never typed into a help
    text by hand; an option without a value by default (None, or a flag off) has its help say
    in words what happens then."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if not action.option_strings or default is None or default is False or default is argparse.SUPPRESS:
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn",
        description="A from-scratch CNN engine and the transfer method of Oquab et al. (CVPR 2014).",
    )
    parser.add_argument("--version", action="version", version=f"minicnn {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        summary, _, rest = doc.partition("\n")
        p = sub.add_parser(name, help=summary, description=doc, formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    if not distributed.launched_by_mpi():
        return _main(argv)
    try:  # one rank's failure, whatever it is, ends the job
        code = _main(argv)
    except SystemExit as e:  # argparse's errors and --help
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except JobInputError:  # every rank refused together: each exits, none is left waiting
        return 2
    except BaseException:
        traceback.print_exc()
        code = 1
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        distributed.abort(code)
    return code


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        world = distributed.world()  # under MPI: find the job before any work
        if world.size > 1:
            distributed.share_cores()
            if getattr(args, "backend", None) == "cuda":
                distributed.use_local_gpu()
        return int(args._run(args) or 0)
    except (InputError, BackendUnavailable) as e:  # anything else is a bug: its traceback shows
        if os.environ.get("MINICNN_DEBUG") == "1":
            raise
        together = isinstance(e, JobInputError) and _in_job()
        alone = _in_job() and not together
        rank = f" (rank {distributed.world().rank} of {distributed.world().size})" if alone else ""
        if not together or distributed.is_root():
            print(f"minicnn {args.command}: error{rank}: {e}", file=sys.stderr)
        if together:
            sys.stderr.flush()
            raise
        return 2
    except KeyboardInterrupt:
        print(f"minicnn {args.command}: interrupted", file=sys.stderr)
        return 130


def _in_job():
    try:
        return distributed.world().size > 1
    except InputError:  # launched by MPI without a usable mpi4py
        return False


if __name__ == "__main__":
    sys.exit(main())
