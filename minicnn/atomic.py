"""The one way minicnn writes a file that a run leaves behind: atomically.

Checkpoints, networks, cache indexes, submission files, JSON summaries and run records
are all written to a temporary file in the same folder, flushed to disk (fsync) and
renamed over the target, so a killed run leaves either the old file or the new one, never
a half-written one; on any failure the temporary file is removed. The file gets the
permissions an ordinary ``open`` would give it (0666 less the umask, so the group can read
it), not the 0600 of ``tempfile``.

    with atomic_open("summary.json", "w") as f:
        json.dump(summary, f)
    write_json("run.json", record)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """A file object for ``path`` ("w" text or "wb" binary) that replaces ``path`` only when
    the ``with`` block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str):
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj, indent=1):
    """``obj`` as JSON (numpy scalars and other numbers through ``float``)."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent, default=_jsonable)
        f.write("\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value)
