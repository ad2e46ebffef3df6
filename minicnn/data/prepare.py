"""Resize an image folder once for pretraining: every image's shorter side to ``short_side``
(256, as Krizhevsky's ImageNet input), aspect ratio kept, written as JPEG (quality 90) under
the same relative path (``root/<class>/<image>`` stays ``out/<class>/<image>.jpg``).

Decoding a 500 x 375 JPEG and resampling it to 341 x 256 costs the loader about as much as
the random crop it is followed by; a 4,000-pixel photo costs ten times more. Done once,
every epoch reads small files and decodes them at full scale.

- **Resumable.** An output is written atomically (``minicnn.atomic``: a temporary file in
  the same folder, renamed over the target), so an existing output is a whole one; it gets
  its source's modification time, and an image whose output exists with that time (or a
  later one) is done: a second run touches nothing, a killed run continues where it
  stopped, an image changed since is made again. Temporary files a killed run left are
  removed.
- **Bad images.** Every pending image's header is read before any work; unreadable ones are
  all named at once (``InputError``) unless ``skip_bad``, which counts and lists them
  (``bad``); an image that fails only when decoded is treated the same way.
- **Parallel** over ``workers`` threads (Pillow releases the GIL while it decodes, resamples
  and encodes) or processes (``pool="process"``); experiments/loader_throughput.py
  measures both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from PIL import Image

from minicnn.atomic import atomic_open
from minicnn.data.transforms import IMAGE_EXTENSIONS, describe_bad, load_image, scan_images
from minicnn.errors import InputError

POOLS = ("thread", "process")
_TMP_PREFIX = ".tmp-"  # minicnn.atomic's temporary files


@dataclass
class PrepareResult:
    images: int = 0                 # images found under the source root
    written: int = 0                # resized and written now
    copied: int = 0                 # already the right size (a JPEG): copied byte for byte
    done_before: int = 0            # left as they were (output already there)
    bad: list = field(default_factory=list)  # (path, reason) of unreadable images (skip_bad)
    ignored: int = 0                # files that are not images
    removed_tmp: int = 0            # temporary files of a killed run, removed


def output_path(out_root, relative):
    """Where the image ``relative`` (to the source root) goes: the same path, with a ``.jpg``
    extension unless it already has a JPEG one."""
    stem, ext = os.path.splitext(relative)
    return os.path.join(out_root, relative if ext.lower() in (".jpg", ".jpeg") else stem + ".jpg")


def find_images(root, out_root=None):
    """(relative paths of the images under ``root``, sorted; the number of other files).
    Hidden files and folders are left out, and so is ``out_root`` when it lies inside."""
    images, ignored = [], 0
    skip = os.path.realpath(out_root) if out_root else None
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(os.path.relpath(os.path.join(folder, name), root))
            else:
                ignored += 1
    return images, ignored


def target_size(width, height, short_side):
    """(width, height) with the shorter side exactly ``short_side``, the aspect ratio kept
    (the longer side rounded)."""
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


def is_done(source, target) -> bool:
    """An output exists and is at least as new as its source (outputs get their source's
    modification time)."""
    try:
        return os.stat(target).st_mtime_ns >= os.stat(source).st_mtime_ns
    except FileNotFoundError:
        return False


def prepare_one(job):
    """Resize one image: ``job`` = (source, target, short_side, quality). Returns
    ("written" | "copied" | "bad", source, reason)."""
    source, target, short_side, quality = job
    try:
        with Image.open(source) as f:
            exact = (f.format == "JPEG" and f.mode == "RGB" and min(f.size) == short_side
                     and f.getexif().get(0x0112, 1) == 1)
            if exact:
                f.load()  # the whole file decodes (not truncated) before its bytes are kept
        if exact:  # already what we would write: keep its bytes (no second JPEG loss)
            with atomic_open(target, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            status = "copied"
        else:
            image = load_image(source, draft_side=short_side)  # a JPEG decoded at reduced scale
            resized = image.resize(target_size(*image.size, short_side), Image.BICUBIC)
            with atomic_open(target, "wb") as out:
                resized.save(out, format="JPEG", quality=quality)
            status = "written"
    except (InputError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return "bad", source, str(e) if isinstance(e, InputError) else f"{source}: cannot read image ({e})"
    stat = os.stat(source)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return status, source, ""


def _prepare_chunk(jobs):
    return [prepare_one(job) for job in jobs]


def _run_jobs(jobs, workers, pool, chunk):
    """The outcomes of ``jobs`` in the order they finish, with at most ``4 * workers`` chunks
    submitted at a time (a million images are not a million futures); leaving early
    cancels what has not started."""
    workers = max(1, int(workers))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    if workers == 1 and pool == "thread":
        for part in chunks:
            yield from _prepare_chunk(part)
        return
    executor = (ThreadPoolExecutor if pool == "thread" else ProcessPoolExecutor)(max_workers=workers)
    pending, queued = set(), iter(chunks)
    try:
        for part in queued:
            pending.add(executor.submit(_prepare_chunk, part))
            if len(pending) >= 4 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                for part in queued:
                    pending.add(executor.submit(_prepare_chunk, part))
                    break
                yield from future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _remove_stale_temporaries(out_root):
    removed = 0
    for folder, _, files in os.walk(out_root):
        for name in files:
            if name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


@dataclass
class Plan:
    """What a run will do: the images still to resize (source, target, short side, quality)
    and what was found (``result``: images, done before, unreadable, ignored)."""

    src: str
    out: str
    jobs: list
    result: PrepareResult


def plan_folder(src, out, short_side=256, quality=90, skip_bad=False, redo=False, workers=2) -> Plan:
    """Find the images under ``src``, those already done in ``out`` (unless ``redo``), and
    read the headers of the others: all unreadable ones raise one :class:`InputError` unless
    ``skip_bad``. Writes nothing."""
    if not os.path.isdir(src):
        raise InputError(f"--data {src}: no such folder")
    if os.path.realpath(out) == os.path.realpath(src):
        raise InputError(f"--out {out} is the source folder; name another one")
    result = PrepareResult()
    relative, result.ignored = find_images(src, out)
    result.images = len(relative)
    if not relative:
        raise InputError(f"{src}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    targets = {}
    for rel in relative:
        target = output_path(out, rel)
        if target in targets:
            raise InputError(f"{os.path.join(src, rel)} and {os.path.join(src, targets[target])} would both "
                             f"be written to {target}; rename one")
        targets[target] = rel
    jobs = []
    for target, rel in targets.items():
        source = os.path.join(src, rel)
        if not redo and is_done(source, target):
            result.done_before += 1
        else:
            jobs.append((source, target, int(short_side), int(quality)))
    bad = dict(scan_images([j[0] for j in jobs], workers=max(1, workers)))
    if bad and not skip_bad:
        raise InputError(f"{src}: {describe_bad(list(bad.items()))}")
    result.bad = list(bad.items())
    return Plan(src, out, [j for j in jobs if j[0] not in bad], result)


def run_plan(plan: Plan, workers=2, pool="thread", skip_bad=False, log=print, on_bad=None) -> PrepareResult:
    """Resize the images of ``plan``; ``on_bad(path, reason)`` is called for each unreadable
    image left out."""
    from minicnn.runrecord import progress_bar

    if pool not in POOLS:
        raise InputError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    result, jobs = plan.result, plan.jobs
    os.makedirs(plan.out, exist_ok=True)
    result.removed_tmp = _remove_stale_temporaries(plan.out)
    removed = (f" ({result.removed_tmp} temporary files of an interrupted run removed)"
               if result.removed_tmp else "")
    left_out = f", {len(result.bad)} unreadable left out" if result.bad else ""
    log(f"{result.images} images under {plan.src}: {result.done_before} already done, {len(jobs)} to "
        f"resize{left_out}{removed}")
    for folder in sorted({os.path.dirname(j[1]) for j in jobs}):
        os.makedirs(folder, exist_ok=True)
    chunk = 1 if pool == "thread" else 16  # a process gets several images per message
    for status, source, reason in progress_bar(_run_jobs(jobs, workers, pool, chunk), total=len(jobs),
                                               desc="prepare", log=log):
        if status == "bad":
            if not skip_bad:
                raise InputError(f"{reason}; fix or remove it, or pass --skip-bad to leave it out "
                                 "(--resume continues with the images not done yet)")
            result.bad.append((source, reason))
        elif status == "copied":
            result.copied += 1
        else:
            result.written += 1
    if on_bad is not None:
        for path, reason in result.bad:
            on_bad(path, reason)
    return result


def prepare_folder(src, out, short_side=256, quality=90, workers=2, pool="thread", skip_bad=False,
                   redo=False, log=print, on_bad=None) -> PrepareResult:
    """Resize every image under ``src`` into ``out`` (see the module docstring): plan, then
    run. ``redo``: make every image again (``--fresh``)."""
    plan = plan_folder(src, out, short_side, quality, skip_bad=skip_bad, redo=redo, workers=workers)
    return run_plan(plan, workers=workers, pool=pool, skip_bad=skip_bad, log=log, on_bad=on_bad)
