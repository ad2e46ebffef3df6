"""Batches prepared in background threads while the network computes.

Decoding (libjpeg) and resampling (Pillow) release the GIL, so worker threads decode in
parallel with each other and with the BLAS calls of the main thread, without copying
batches between processes. Memory is bounded: at most ``prefetch`` batches are prepared
ahead. Order and augmentation are fixed by the seed alone: the epoch's order comes from
``(seed, epoch)`` and the random crops and flips of batch ``b`` from ``(seed, epoch, b)``,
whichever worker builds it and whenever it finishes.
"""

from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from minicnn.data.transforms import ImageTransform, load_image, subtract_mean, to_chw
from minicnn.errors import InputError

# SeedSequence tags, so the order stream and the augmentation streams never coincide
_ORDER, _AUGMENT = 0, 1


def ordered_map(fn, jobs, workers=2, prefetch=None):
    """``fn(job)`` for each of ``jobs``, yielded in order, computed ahead by ``workers``
    threads with at most ``prefetch`` (default ``2 * workers``) results waiting or in
    progress. ``workers=0`` computes each result when it is asked for, in this thread.
    An exception in ``fn`` is raised here; breaking off, an exception or Ctrl-C in the
    consumer cancel what has not started and wait for the few jobs already running."""
    if workers <= 0:
        for job in jobs:
            yield fn(job)
        return
    prefetch = max(1, prefetch or 2 * workers)
    jobs = iter(jobs)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minicnn-loader")
    pending = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= prefetch:
                break
        while pending:
            result = pending.popleft().result()
            for job in jobs:  # refill to `prefetch` before handing the result out
                pending.append(pool.submit(fn, job))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class Batch(NamedTuple):
    images: np.ndarray   # (B, 3, S, S) float32, mean subtracted if a mean was given
    labels: np.ndarray   # (B,) int64
    indices: np.ndarray  # (B,) int64 positions of the images in the loader's list


class ImageLoader:
    """Batches of transformed images from files.

    ``paths`` and ``labels`` (e.g. an :class:`~minicnn.data.folders.ImageFolder`'s),
    ``transform`` an :class:`~minicnn.data.transforms.ImageTransform`. ``shuffle``:
    a new order every epoch (from the seed). ``mean``: (3,) or (3, S, S) subtracted from
    every batch. ``skip_bad``: an unreadable image is left out of its batch and recorded
    in ``skipped`` (path -> reason) and reported at the end of the epoch, instead of
    raising :class:`InputError`. ``progress``: show a progress bar with images/s (a
    string is its label). ``workers`` threads build up to ``prefetch`` batches ahead.

    ``for batch in loader.epoch(e)`` yields :class:`Batch` (images, labels, indices).
    """

    def __init__(self, paths, labels, transform: ImageTransform, batch_size=128, shuffle=False, seed=0,
                 mean=None, workers=2, prefetch=None, drop_last=False, skip_bad=False, progress=False):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"ImageLoader: {len(self.paths)} paths but {len(self.labels)} labels")
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.transform, self.batch_size = transform, int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.workers, self.prefetch = int(workers), prefetch
        self.skip_bad, self.progress = bool(skip_bad), progress
        self.skipped: dict[str, str] = {}

    def __len__(self):
        """Batches per epoch."""
        n = len(self.paths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch=0) -> np.ndarray:
        """Positions of the images in the order epoch ``epoch`` visits them."""
        if not self.shuffle:
            return np.arange(len(self.paths))
        return np.random.default_rng([self.seed, epoch, _ORDER]).permutation(len(self.paths))

    def epoch(self, epoch=0):
        """Iterate over the batches of epoch ``epoch``."""
        order = self.order(epoch)
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        jobs = [(epoch, b, chunk) for b, chunk in enumerate(chunks)]
        bar = self._progress_bar(sum(len(c) for c in chunks), epoch)
        skipped_now = 0
        try:
            for batch, bad in ordered_map(self._make_batch, jobs, self.workers, self.prefetch):
                self.skipped.update(bad)
                skipped_now += len(bad)
                if bar is not None:
                    bar.update(len(batch.labels) + len(bad))
                if len(batch.labels):
                    yield batch
        finally:
            if bar is not None:
                bar.close()
            if skipped_now:
                print(f"skipped {skipped_now} unreadable images in epoch {epoch} "
                      f"(e.g. {next(iter(self.skipped.items()))[0]}); see loader.skipped",
                      file=sys.stderr)

    def _progress_bar(self, total, epoch):
        if not self.progress:
            return None
        from tqdm import tqdm

        label = self.progress if isinstance(self.progress, str) else f"epoch {epoch}"
        return tqdm(total=total, desc=label, unit="img", unit_scale=True, leave=False, dynamic_ncols=True)

    def _make_batch(self, job):
        epoch, b, indices = job
        return self._load(indices, self._augment_rng(epoch, b))

    def _augment_rng(self, epoch, b):
        """The generator of batch ``b``'s crops and flips (None for a fixed transform)."""
        return np.random.default_rng([self.seed, epoch, _AUGMENT, b]) if self.transform.is_random else None

    def _load(self, indices, rng):
        """(Batch of the images at ``indices``, transformed in order with ``rng``; {path: reason}
        of the unreadable ones left out under ``skip_bad``)."""
        size = self.transform.size
        pixels = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        kept, bad = [], {}
        for i in indices:
            try:
                image = load_image(self.paths[i], draft_side=self.transform.resize)
            except InputError as e:
                if not self.skip_bad:
                    raise
                bad[self.paths[i]] = str(e)
                continue
            pixels[len(kept)] = self.transform(image, rng)
            kept.append(i)
        kept = np.asarray(kept, dtype=np.int64)
        images = to_chw(pixels[:len(kept)])
        if self.mean is not None:
            subtract_mean(images, self.mean)
        return Batch(images, self.labels[kept], kept), bad


def image_statistics(paths, transform: ImageTransform, max_images=1000, seed=0, workers=2, skip_bad=False):
    """(mean image (3, S, S), per-channel standard deviation (3,)), float32, of ``transform``
    (use the test-time transform, i.e. centre crops) over at most ``max_images`` images
    chosen by ``seed`` (``skip_bad``: unreadable ones left out). ``mean.mean(axis=(1, 2))``
    is the per-channel mean."""
    paths = list(paths)
    chosen = np.random.default_rng(seed).permutation(len(paths))[:max_images]
    loader = ImageLoader([paths[i] for i in np.sort(chosen)], np.zeros(len(chosen)), transform,
                         batch_size=64, workers=workers, skip_bad=skip_bad)
    total, squares, count = np.zeros((3, transform.size, transform.size), np.float64), np.zeros(3), 0
    for batch in loader.epoch(0):
        total += batch.images.sum(axis=0, dtype=np.float64)
        squares += np.square(batch.images, dtype=np.float64).sum(axis=(0, 2, 3))
        count += len(batch.labels)
    if count == 0:
        raise InputError("image statistics: no images")
    mean = total / count
    pixels = count * transform.size * transform.size
    variance = squares / pixels - mean.mean(axis=(1, 2)) ** 2
    return mean.astype(np.float32), np.sqrt(np.maximum(variance, 1e-12)).astype(np.float32)


def estimate_mean(paths, transform: ImageTransform, max_images=1000, seed=0, workers=2) -> np.ndarray:
    """The mean image (3, S, S) float32 of :func:`image_statistics`."""
    return image_statistics(paths, transform, max_images, seed, workers)[0]
