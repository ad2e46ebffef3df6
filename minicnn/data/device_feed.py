"""Host-to-device batch upload, pinned and double-buffered.

    for images, labels in DeviceFeed(host_batches):   # host arrays in, device arrays out
        loss, dlogits = softmax_cross_entropy(net.forward(images), labels)
        ...

``host_batches`` yields NumPy arrays, or tuples / named tuples of them (a
:class:`minicnn.data.loader.Batch`, say); the feed yields the same structure with the
arrays on the current backend's device. On a GPU each batch is copied into one of two
pinned host buffers and sent on a separate copy stream into one of two device buffers: the
upload of batch k+1 waits only until the GPU is done with batch k-1 (the last user of its
buffer) and then overlaps the computation on batch k, and the computation waits for its
upload on the device, never on the host. Since kernels run asynchronously, the host is
meanwhile free to prepare the next batches (the loader's threads, or the source iterator
itself when the feed asks for the next one).

The arrays yielded are the feed's device buffers: each stays valid until the next batch
is taken; copy it to keep it longer. On the numpy and cpu backends batches pass through
untouched; under Numba's CUDA simulator the same two-buffer scheme runs with plain NumPy
copies, so it is exercised without a GPU.
"""

from __future__ import annotations

import numpy as np

from minicnn import backend

SLOTS = 2


class _Slot:
    """One buffer set: per array field a pinned host buffer and a device buffer (bytes,
    grown when a larger batch comes), the event marking the upload done, and the event
    marking the last computation on it done."""

    def __init__(self):
        self.host: dict = {}
        self.device: dict = {}
        self.uploaded = None
        self.released = None


class DeviceFeed:
    """Iterate over ``batches`` with every array moved to the current backend's device.

    ``keep_on_host``: fields (positions, or names for named tuples) left as they are, e.g.
    ``("indices",)`` for a loader's image positions that only the host reads."""

    def __init__(self, batches, keep_on_host=()):
        self.batches = batches
        self.keep_on_host = set(keep_on_host)

    def __iter__(self):
        current = backend.get_backend()
        if current.name != "cuda":
            yield from self.batches
            return
        gpu = not current.simulated
        if gpu:
            import cupy

            copy_stream = cupy.cuda.Stream(non_blocking=True)
            compute_stream = cupy.cuda.get_current_stream()
        else:
            cupy = copy_stream = compute_stream = None
        slots = [_Slot() for _ in range(SLOTS)]

        def upload(item, slot):
            """Start copying the arrays of ``item`` into ``slot``; return the device structure."""
            if gpu and slot.uploaded is not None:
                slot.uploaded.synchronize()  # its pinned buffers are still being read
            if gpu and slot.released is not None:
                copy_stream.wait_event(slot.released)  # the GPU is done with its device buffers
            fields = self._fields(item)
            moved = {}
            for key, a in fields.items():
                if not isinstance(a, np.ndarray) or key in self.keep_on_host:
                    continue
                a = np.ascontiguousarray(a)
                host = self._buffer(slot.host, key, a.nbytes, cupy, pinned=True)
                dev = self._buffer(slot.device, key, a.nbytes, cupy, pinned=False)
                host_view = host[: a.nbytes].view(a.dtype).reshape(a.shape)
                dev_view = dev[: a.nbytes].view(a.dtype).reshape(a.shape)
                np.copyto(host_view, a)
                if gpu:
                    dev_view.set(host_view, stream=copy_stream)
                else:
                    np.copyto(dev_view, host_view)
                moved[key] = dev_view
            if gpu:
                slot.uploaded = copy_stream.record()
            return self._rebuild(item, {**fields, **moved})

        source = iter(self.batches)
        end = object()
        item = next(source, end)
        if item is end:
            return
        try:
            ready = upload(item, slots[0])
            k = 0
            while True:
                following = next(source, end)
                if k > 0 and gpu:
                    # the consumer came back, so every computation on batch k-1 is queued
                    slots[(k - 1) % SLOTS].released = compute_stream.record()
                upcoming = None if following is end else upload(following, slots[(k + 1) % SLOTS])
                if gpu:
                    compute_stream.wait_event(slots[k % SLOTS].uploaded)
                yield ready
                if upcoming is None:
                    return
                ready, k = upcoming, k + 1
        finally:
            # also when the consumer stops early: no copy may still read a pinned buffer
            # once the slots are dropped
            for slot in slots:
                if slot.uploaded is not None:
                    slot.uploaded.synchronize()

    def _fields(self, item) -> dict:
        if isinstance(item, tuple) and hasattr(item, "_fields"):  # named tuple
            return dict(zip(item._fields, item, strict=True))
        if isinstance(item, (tuple, list)):
            return dict(enumerate(item))
        return {0: item}

    def _rebuild(self, item, fields: dict):
        if isinstance(item, tuple) and hasattr(item, "_fields"):
            return type(item)(**fields)
        if isinstance(item, (tuple, list)):
            return type(item)(fields[i] for i in range(len(item)))
        return fields[0]

    @staticmethod
    def _buffer(store: dict, key, nbytes: int, cupy, pinned: bool):
        """A byte buffer of at least ``nbytes`` for field ``key``, kept and reused: NumPy when
        ``cupy`` is None, else pinned host memory or CuPy device memory."""
        buf = store.get(key)
        if buf is None or buf.size < nbytes:
            if cupy is None:
                buf = np.empty(nbytes, dtype=np.uint8)
            elif pinned:
                import cupyx

                buf = cupyx.empty_pinned(nbytes, dtype=np.uint8)
            else:
                buf = cupy.empty(nbytes, dtype=np.uint8)
            store[key] = buf
        return buf
