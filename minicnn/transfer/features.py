"""Feature cache: the frozen layers' output for every patch, computed once, memory-mapped.

With C1..FC7 frozen (docs/method.md section 3), the FC7 output of a patch is a constant, so it
is computed once and FCa/FCb train on the stored features: the same procedure as running
the frozen layers every epoch, only faster. The cache is a directory holding

    features.npy   (N, D) float32 or float16, opened as a memory map
    index.npz      image (N,) index into the image list, boxes (N, 4), labels (N,)
    parts.json     what the key was made of (written once, to read)
    progress.json  the key, the sizes, and how many images are done (rewritten after
                   every group of images: kept small)

named by a hash of everything the features depend on (the frozen layers' parameters and
architecture, the cut layer, the sampler, the patch size and preprocessing, the images),
so a run with the same network and sampler reuses it and any change builds a new one.
Building writes image by image and records progress atomically after each flush: an
interrupted build resumes where it stopped.

Under MPI (``minicnn.distributed``) the ranks compute the groups of images of one process
in turns (rank r the r-th group of each round of N) and send their rows to rank 0, which
alone writes the file: the same groups in the same batches make the same bytes as one
process, and progress still advances a prefix of the images, so a build interrupted with N
ranks resumes with any number.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from minicnn import backend, distributed
from minicnn.atomic import write_json
from minicnn.data.loader import ordered_map
from minicnn.net import atomic_savez


def network_fingerprint(net) -> str:
    """sha1 of a network's architecture and the bytes of its parameters and buffers (batch
    normalisation's running statistics, which the frozen layers' output depends on)."""
    h = hashlib.sha1(json.dumps(net.architecture()["layers"], sort_keys=True).encode())
    for name, p in net.named_arrays().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(backend.to_numpy(p)).tobytes())
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FeatureCache:
    """A finished (or partly built) cache: memory-mapped features and their index."""

    directory: str
    features: np.ndarray   # (N, D) memmap
    image: np.ndarray      # (N,) image index of each patch
    boxes: np.ndarray      # (N, 4)
    labels: np.ndarray     # (N,)
    offsets: np.ndarray    # (n_images + 1,): patches of image i are rows offsets[i]:offsets[i+1]

    def rows_of(self, i):
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def cache_directory(root, name, extractor, images, key_parts, dtype):
    """(the folder, key and key parts of the cache of ``extractor``'s output for these images
    and settings): ``root/<name>-<key>``, the key a digest of the network's weights, the
    images, ``key_parts`` and ``dtype``, so that any change gives a new cache."""
    parts = dict(key_parts, network=network_fingerprint(extractor), images=list(images),
                 dtype=np.dtype(dtype).name)
    key = cache_key(parts)
    return os.path.join(root, f"{name}-{key}"), key, parts


def cache_bytes_left(directory, needed):
    """Bytes that the cache in ``directory`` still has to put on disk, of ``needed`` in all:
    none once it is finished; for one begun and stopped, what its feature file (sparse until
    written) has not allocated yet; all of them for one not begun."""
    try:
        with open(os.path.join(directory, "progress.json")) as f:
            state = json.load(f)
        if state["done"] == state["total"]:
            return 0
        allocated = os.stat(os.path.join(directory, "features.npy")).st_blocks * 512
    except (OSError, ValueError, KeyError, TypeError):
        return needed
    return max(needed - allocated, 0)


def build_feature_cache(root, name, extractor, images, boxes_of, labels_of, render, key_parts,
                        dtype=np.float32, batch_size=256, progress=None, render_threads=None,
                        prepare=None) -> FeatureCache:
    """Compute (or reuse, or resume) the cache of ``extractor``'s output for every patch.

    ``extractor``: a Sequential of the frozen layers (evaluation mode); ``images``: a list
    of image ids; ``boxes_of(i)`` the (M_i, 4) patch boxes of image i; ``labels_of(i)``
    their labels; ``render(i, boxes)`` the (M_i, 3, S, S) network input of those patches
    (or their uint8 pixels, with ``prepare`` the preprocessing applied on the device);
    ``key_parts``: a JSON-able description of the sampler, patch size and preprocessing
    (the network and images are added here). ``progress``: an optional
    callable(n_done, n_total) called as images are done. Images are processed in groups of
    at least ``batch_size`` patches, rendered by ``render_threads`` background threads
    (default: up to 8 cores; ``render`` must be safe to call from several threads) while the
    network computes the previous group.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"feature cache dtype must be float32 or float16, got {dtype}")
    directory, key, parts = cache_directory(root, name, extractor, images, key_parts, dtype)
    progress_path = os.path.join(directory, "progress.json")
    features_path = os.path.join(directory, "features.npy")
    index_path = os.path.join(directory, "index.npz")
    root_rank = distributed.is_root()

    state = None
    if root_rank:
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(progress_path):
            with open(progress_path) as f:
                state = json.load(f)
            if state.get("key") != key:
                state = None
        if state is None or not os.path.exists(index_path) or not os.path.exists(features_path):
            state = _start_cache(key, parts, extractor, images, boxes_of, labels_of, render, dtype,
                                 index_path, features_path, progress_path, prepare)
    state = distributed.broadcast(state)  # the others read the index once rank 0 has written it

    with np.load(index_path) as idx:
        index = {k: idx[k] for k in idx.files}
    offsets = index["offsets"]
    if state["done"] < len(images):
        writer = _RowWriter(features_path) if root_rank else None
        groups = _image_groups(offsets, state["done"], batch_size)
        rank, ranks = distributed.world().rank, distributed.world().size

        def rendered(group):  # runs in a background thread, overlapping the network
            return group, [render(i, index["boxes"][offsets[i]:offsets[i + 1]]) for i in group]

        # several groups rendered at once (decoding and the crop kernel release the GIL): an
        # H200's FC7 takes 24-25k patches/s at 227 pixels, 3 to 4 cores' worth of cropping;
        # 8 threads keep a slower core or a larger JPEG from holding it back
        threads = render_threads or min(8, os.cpu_count() or 1)
        mine = ordered_map(rendered, groups[rank::ranks], workers=threads, prefetch=threads + 1)
        for first in range(0, len(groups), ranks):  # a round: one group per rank
            part = None
            if first + rank < len(groups):
                group, pixels = next(mine)
                batch = backend.array_module(pixels[0]).concatenate(pixels)  # on the GPU if cut there
                part = group, extract(extractor, batch, batch_size, prepare)
            received = distributed.gather_to_root(part)
            if not root_rank:
                continue
            for group, values in filter(None, received):
                writer.write(int(offsets[group[0]]), values)
            # on disk before the progress says so: a crash never marks unwritten rows as done
            writer.sync()
            state["done"] = groups[min(first + ranks, len(groups)) - 1][-1] + 1
            write_json(progress_path, state)
            if progress:
                progress(state["done"], len(images))
        if writer is not None:
            writer.close()
        distributed.barrier()  # every row written before any rank opens the file to read
    return FeatureCache(directory, np.load(features_path, mmap_mode="r"), index["image"],
                        index["boxes"], index["labels"], offsets)


class _RowWriter:
    """Writes rows of a .npy file in place with ``pwrite``, not through a memory map: the
    written pages stay in the page cache, not in the process (a mapped file's dirty and
    written pages count in its resident memory, which then grows to the size of the cache)."""

    def __init__(self, path):
        mapped = np.load(path, mmap_mode="r")
        self.header, self.dtype = mapped.offset, mapped.dtype
        self.row_bytes = mapped.dtype.itemsize * int(np.prod(mapped.shape[1:]))
        del mapped
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, first_row, rows):
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        position = self.header + first_row * self.row_bytes
        while data:
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


def _start_cache(key, parts, extractor, images, boxes_of, labels_of, render, dtype, index_path,
                 features_path, progress_path, prepare=None):
    """Write the index and an empty feature file; returns the progress state (none done)."""
    all_boxes = [np.asarray(boxes_of(i), np.float64).reshape(-1, 4) for i in range(len(images))]
    counts = np.array([len(b) for b in all_boxes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    labels = np.concatenate([np.asarray(labels_of(i), np.int64) for i in range(len(images))])
    dim = _output_dim(extractor, render, all_boxes, prepare)
    atomic_savez(index_path, {"image": np.repeat(np.arange(len(images)), counts),
                              "boxes": np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4)),
                              "labels": labels, "offsets": offsets})
    np.lib.format.open_memmap(features_path, mode="w+", dtype=dtype, shape=(int(offsets[-1]), dim)).flush()
    write_json(os.path.join(os.path.dirname(progress_path), "parts.json"), parts)
    state = {"key": key, "done": 0, "total": len(images), "dim": dim}
    write_json(progress_path, state)
    return state


def _image_groups(offsets, start, batch_size):
    """Consecutive images from ``start`` in groups of at least ``batch_size`` patches (the
    last group may hold fewer): full batches for the network whatever the patches per image."""
    groups, group, count = [], [], 0
    for i in range(start, len(offsets) - 1):
        group.append(i)
        count += int(offsets[i + 1] - offsets[i])
        if count >= batch_size:
            groups.append(group)
            group, count = [], 0
    if group:
        groups.append(group)
    return groups


def _output_dim(extractor, render, all_boxes, prepare=None):
    for i, b in enumerate(all_boxes):
        if len(b):
            return int(extract(extractor, render(i, b[:1]), 1, prepare).shape[1])
    raise ValueError("feature cache: no image has any patch")


def extract(extractor, pixels, batch_size=256, prepare=None):
    """Forward ``pixels`` (n, 3, S, S) through ``extractor`` in evaluation mode, in batches;
    returns a numpy (n, D) array. ``prepare``: applied to each batch once it is on the
    backend's device (the preprocessing of uint8 pixels, which then travel as uint8)."""
    out = []
    for s in range(0, len(pixels), batch_size):
        x = backend.asarray(pixels[s : s + batch_size])
        y = extractor.forward(x if prepare is None else prepare(x), train=False, keep_for_backward=False)
        out.append(backend.to_numpy(y).reshape(len(y), -1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
