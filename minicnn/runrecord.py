"""A record of every run: ``OUT/run.json`` and ``OUT/log.txt``.

A command that leaves results in a folder OUT records there what ran, with which
settings, on which inputs, how long each stage took, what was skipped and what came out:

    record = RunRecord(out, command="transfer", settings=settings, inputs=[network, list_file],
                       resume=args.resume, fresh=args.fresh)
    with record.stage("cache"):
        ...
    record.skip(path, "unreadable image")
    record.data(images=1200, patches=480000)
    record.log("epoch 3: loss 0.41")
    record.finish({"map": 0.72})

``run.json`` (written atomically at once, after each stage, and at the end)::

    {"name": "transfer", "command": [argv...], "version": "0.1.0", "settings": {...},
     "inputs": {"/abs/path": "<sha256>"}, "data": {...}, "started": ISO time,
     "finished": ISO time or null, "resumed": [ISO times], "skipped": [{"item", "reason"}],
     "seconds": {stage: seconds}, "result": {...} or null, "ranks": 1}

A folder that already holds a run is refused unless ``resume`` (the same settings and
inputs, compared by content: each difference is named) or ``fresh`` (the old record is
replaced; which other files to clear is the command's choice; a run of another command is
never replaced); ``resume`` where there is no run yet starts one. ``log.txt`` is appended to,
one line per message with its time, so a killed run keeps every line it wrote.

Under MPI (``minicnn.distributed``) every rank checks the folder and the settings (the
ranks' settings and inputs must agree), and rank 0 alone writes the record and the log
and prints; ``ranks`` is the number of ranks of the latest launch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from datetime import datetime

from minicnn import distributed
from minicnn.atomic import write_json
from minicnn.errors import InputError, shown

RECORD_NAME = "run.json"
LOG_NAME = "log.txt"


def now() -> str:
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def package_version() -> str:
    """The installed package's version, else the source tree's ``minicnn.__version__``."""
    from importlib import metadata

    try:
        return metadata.version("minicnn")
    except metadata.PackageNotFoundError:
        import minicnn

        return minicnn.__version__


def sha256_file(path, chunk=1 << 20) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (inputs can be gigabytes)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except OSError as e:
        raise InputError(f"{path}: cannot read input ({e.strerror or e})") from None
    return digest.hexdigest()


def jsonable(value):
    """``value`` as JSON reads it back: tuples become lists, paths strings, NumPy values
    Python numbers, sets sorted lists, dataclasses dicts; so recorded and new settings
    compare equal."""
    def default(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclasses.asdict(v)
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, (set, frozenset)):
            return sorted(v)
        if hasattr(v, "tolist"):
            return v.tolist()
        raise TypeError(f"setting {v!r} ({type(v).__name__}) cannot be recorded in {RECORD_NAME}")

    return json.loads(json.dumps(value, default=default))


def _off(value):
    return value is None or value is False  # not 0: a number is a setting's value


def _differences(old, new, prefix=""):
    """'key: old -> new' for every setting that differs, nested keys dotted. A setting that
    one side lacks matches its off value (None or false) on the other: a newer minicnn added
    the setting, and a run recorded before can still be resumed with it off."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            name = f"{prefix}{key}"
            if key not in new:
                if not _off(old[key]):
                    out.append(f"{name}: {json.dumps(old[key])} -> (not set)")
            elif key not in old:
                if not _off(new[key]):
                    out.append(f"{name}: (not set) -> {json.dumps(new[key])}")
            else:
                out += _differences(old[key], new[key], name + ".")
        return out
    both_nan = isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new)
    if old == new or both_nan:
        return []
    return [f"{prefix[:-1] if prefix.endswith('.') else prefix}: {json.dumps(old)} -> {json.dumps(new)}"]


def _which(old) -> str:
    """'a run of `minicnn NAME` (started TIME)' of a record read back."""
    return (f"a run of `minicnn {shown(old.get('name', '?'), quote=False)}` (started "
            f"{shown(old.get('started', '?'), quote=False)})")


class RunRecord:
    """The record of one run of ``minicnn <command>`` in ``out_dir`` (see the module
    docstring). ``settings``: every setting of the run (a JSON-able dict or a dataclass,
    nested ones included); ``inputs``: the files
    it reads (networks, lists), recorded by SHA-256; ``argv`` defaults to ``sys.argv``;
    ``may_change``: settings a resume may change (by default the number of epochs, so that a
    run can be trained further, and the decoding threads, which change no result)."""

    def __init__(self, out_dir, command, settings, inputs=(), resume=False, fresh=False, argv=None,
                 may_change=("epochs", "workers")):
        self.dir = os.fspath(out_dir)
        self.path = os.path.join(self.dir, RECORD_NAME)
        self.log_path = os.path.join(self.dir, LOG_NAME)
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise InputError(f"{self.dir} is a file, not an output folder")
        given, settings = settings, jsonable(settings)
        if not isinstance(settings, dict):
            raise TypeError(f"RunRecord: settings must be a dict or a dataclass, not {type(given).__name__}")
        hashes = {os.path.abspath(os.fspath(p)): sha256_file(p) for p in inputs}
        ranks = distributed.world().size
        distributed.check_same("settings or inputs", [command, settings, hashes, bool(resume), bool(fresh)])
        if fresh:
            self._refuse_another_commands_run(command)
        old = None if fresh else self._read_previous()
        self.was_finished = old is not None and old.get("finished") is not None  # a rerun of a whole run
        if old is not None and not resume and old.get("name") != command:
            self._refuse_another_commands_run(command)
        if old is not None and not resume:
            raise InputError(f"{self.dir} holds {_which(old)}; pass --resume to continue it or --fresh "
                             "to start over")
        if old is not None:
            self._check_same(old, command, settings, hashes, may_change)
            self.record = old
            self.record["settings"] = settings  # only the settings of ``may_change`` can differ
            self.record["resumed"] = [*old.get("resumed", []), now()]
            self.record["finished"] = None
            self.record.setdefault("seconds", {})
            self.record.setdefault("skipped", [])
            self.record.setdefault("data", {})
            self.record["ranks"] = ranks  # a run may resume with any number of ranks
        else:
            self.record = {"name": command, "command": list(sys.argv if argv is None else argv),
                           "version": package_version(), "settings": settings, "inputs": hashes,
                           "data": {}, "started": now(), "finished": None, "resumed": [], "skipped": [],
                           "seconds": {}, "result": None, "ranks": ranks}
        self.resumed = old is not None
        self._skips = {(s.get("item"), s.get("reason")) for s in self.record["skipped"]}
        distributed.barrier()  # every rank has read the old record before rank 0 replaces it
        self.save()

    def _read_previous(self):
        if not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"{self.path}: not a readable run record ({e}); pass --fresh to start "
                             "over") from None
        if not isinstance(old, dict) or "settings" not in old:
            raise InputError(f"{self.path}: not a run record (no settings); pass --fresh to start over")
        # each entry of the type the record is written with: a record edited by hand or damaged
        # is refused here, not met as a TypeError half-way through the resume
        shapes = {"name": str, "settings": dict, "inputs": dict, "data": dict, "seconds": dict,
                  "resumed": list, "skipped": list, "command": list, "started": str}
        for key, kind in shapes.items():
            if key in old and not isinstance(old[key], kind):
                raise InputError(f"{self.path}: not a run record ('{key}' is not a JSON "
                                 f"{'object' if kind is dict else 'array' if kind is list else 'string'}); "
                                 "pass --fresh to start over")
        bad = [s for s in old.get("skipped", []) if not isinstance(s, dict)]
        bad += [d for d in old.get("inputs", {}).values() if not isinstance(d, str)]
        if bad or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in old.get("seconds", {}).values()):
            raise InputError(f"{self.path}: not a run record (a damaged 'skipped', 'inputs' or 'seconds' "
                             "entry); pass --fresh to start over")
        return old

    def _refuse_another_commands_run(self, command):
        """``fresh`` replaces a run of the same command only: a run never writes over the
        record (and the outputs) of another command, e.g. a transfer into a make-data folder."""
        try:
            old = self._read_previous()
        except InputError:  # an unreadable record: --fresh is how to start over
            return
        if old is not None and old.get("name") != command:
            raise InputError(f"{self.dir} holds {_which(old)}, which a run of `minicnn {command}` never "
                             "replaces (nor with --fresh): name another folder")

    def _check_same(self, old, command, settings, hashes, may_change):
        if old.get("name") != command:
            ran = shown(old.get("name", "?"), quote=False)
            raise InputError(f"{self.dir} holds a run of `minicnn {ran}`, not of `minicnn {command}`; "
                             "--resume continues a run of the same command: name another folder")
        # a resumed run may go on for more epochs; every other setting must be the run's
        differences = _differences(old.get("settings", {}), settings)
        problems = [f"setting {shown(d, 300, quote=False)}" for d in differences
                    if d.split(":")[0].split(".")[-1] not in may_change]
        recorded = old.get("inputs", {})
        for path, digest in hashes.items():
            if path not in recorded:
                problems.append(f"input {path} was not an input of the run")
            elif recorded[path] != digest:
                problems.append(f"input {path} has changed (sha256 {recorded[path][:12]}... -> "
                                f"{digest[:12]}...)")
        problems += [f"input {shown(path, 200, quote=False)} of the run is not given"
                     for path in recorded if path not in hashes]
        if problems:
            raise InputError(f"cannot resume the run in {self.dir}: {'; '.join(problems)} "
                             "(use the run's settings and inputs, or --fresh to start over)")

    # --- access --------------------------------------------------------------------------
    def __getitem__(self, key):
        return self.record[key]

    # --- recording -----------------------------------------------------------------------
    def save(self):
        """Write ``run.json`` now (atomically; rank 0 alone under MPI)."""
        if distributed.is_root():
            write_json(self.path, self.record)

    def log(self, message):
        """Print ``message`` and append it, with the time, to ``log.txt`` (rank 0 alone)."""
        if not distributed.is_root():
            return
        message = str(message)
        print(message)
        stamp = now()
        os.makedirs(self.dir, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write("".join(f"{stamp} {line}\n" for line in message.splitlines() or [""]))

    @contextlib.contextmanager
    def stage(self, name):
        """Add the time the ``with`` block takes to ``seconds[name]`` (kept across resumes,
        counted even when the block raises) and save the record."""
        start = time.perf_counter()
        try:
            yield self
        finally:
            seconds = self.record["seconds"]
            seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            self.save()

    def skip(self, item, reason):
        """Record a skipped item (once per item and reason; saved with the next save)."""
        key = (str(item), str(reason))
        if key not in self._skips:
            self._skips.add(key)
            self.record["skipped"].append({"item": key[0], "reason": key[1]})

    def data(self, **counts):
        """Merge counts (images, patches, ...) into ``data`` and save the record."""
        self.record["data"].update(jsonable(counts))
        self.save()

    def finish(self, result: dict):
        """Record the result and the finishing time; returns the record."""
        self.record["result"] = jsonable(result)
        self.record["finished"] = now()
        self.save()
        return self.record


def open_run(out, command, settings, inputs=(), resume=False, fresh=False, outputs=()):
    """The RunRecord of a command's output folder, checked before any work: ``outputs`` are
    the files a run of the command leaves (checkpoints, networks); a folder holding them
    without a record (a run made before records existed) is refused too, and ``fresh``
    removes them so that the run starts over."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; name a folder")
    present = [name for name in outputs if os.path.exists(os.path.join(out, name))]
    if present and not (resume or fresh) and not os.path.exists(os.path.join(out, RECORD_NAME)):
        raise InputError(f"{out} holds the results of an earlier run ({', '.join(present)}); pass --resume "
                         "to continue it or --fresh to start over")
    record = RunRecord(out, command, settings, inputs=inputs, resume=resume, fresh=fresh)
    if fresh and distributed.is_root():
        for name in present:
            os.unlink(os.path.join(out, name))
    return record


def progress_bar(iterable, total=None, desc="", log=print, every_fraction=0.1, every_seconds=30.0,
                 stream=None):
    """Iterate over ``iterable`` showing progress: a tqdm bar when ``stream`` (default
    stderr) is a terminal, else plain lines through ``log`` (e.g. ``RunRecord.log``) every
    ``every_fraction`` of ``total`` or ``every_seconds``, whichever comes first, and at the
    end; no carriage returns reach a log file or a pipe."""
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        yield from tqdm(iterable, total=total, desc=desc, file=stream, dynamic_ncols=True)
        return
    label = f"{desc}: " if desc else ""
    start = last = time.monotonic()
    step = max(1, int(total * every_fraction)) if total else None
    next_count, done, logged = step, 0, 0

    def line(clock):
        elapsed = clock - start
        if total:
            return f"{label}{done}/{total} ({100 * done / total:.0f}%) in {elapsed:.0f} s"
        return f"{label}{done} in {elapsed:.0f} s"

    for item in iterable:
        yield item
        done += 1
        clock = time.monotonic()
        if (step and done >= next_count) or clock - last >= every_seconds:
            log(line(clock))
            last, logged = clock, done
            while step and next_count <= done:
                next_count += step
    if logged != done or done == 0:
        log(line(time.monotonic()))
