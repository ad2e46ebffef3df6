"""DeviceFeed: host batches in, device batches out, through two reused buffer slots."""

from typing import NamedTuple

import numpy as np
import pytest
from cuda_support import cuda_backend

import minicnn as mc
from minicnn import backend
from minicnn.data.device_feed import DeviceFeed


class Batch(NamedTuple):
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def host_batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    for i, n in enumerate(sizes):
        yield Batch(rng.standard_normal((n, 3, 4, 4)).astype(np.float32), rng.integers(0, 5, n),
                    np.arange(n) + 100 * i)


def device_pointer(a):
    if hasattr(a, "__cuda_array_interface__"):
        return a.__cuda_array_interface__["data"][0]
    return a.__array_interface__["data"][0]


def test_feed_yields_every_batch_on_the_device_in_order():
    cuda = cuda_backend()
    sizes = [4, 4, 3, 6, 2]  # a smaller, then a larger batch: the buffers grow
    expected = list(host_batches(sizes))
    seen = 0
    for got, want in zip(DeviceFeed(host_batches(sizes), keep_on_host=("indices",)), expected, strict=True):
        assert isinstance(got, Batch)
        assert backend.array_module(got.images) is cuda.xp
        np.testing.assert_array_equal(mc.to_numpy(got.images), want.images)
        np.testing.assert_array_equal(mc.to_numpy(got.labels), want.labels)
        assert got.images.dtype == np.float32 and got.labels.dtype == want.labels.dtype
        assert isinstance(got.indices, np.ndarray)  # left on the host as asked
        np.testing.assert_array_equal(got.indices, want.indices)
        seen += 1
    assert seen == len(sizes)


def test_feed_alternates_between_two_buffer_slots():
    cuda_backend()
    pointers = [device_pointer(b.images) for b in DeviceFeed(host_batches([2, 2, 2, 2]))]
    assert pointers[0] != pointers[1]  # batch k+1 is uploaded while batch k is in use
    assert pointers[0] == pointers[2] and pointers[1] == pointers[3]  # and the slots are reused


def test_feed_accepts_plain_arrays_tuples_and_nothing():
    cuda_backend()
    arrays = [np.full((2, 3), i, dtype=np.float64) for i in range(3)]
    got = [mc.to_numpy(a).copy() for a in DeviceFeed(iter(arrays))]
    np.testing.assert_array_equal(np.stack(got), np.stack(arrays))
    pairs = [(a, "tag") for a in arrays]
    for (a, tag), (b, _) in zip(DeviceFeed(pairs), pairs, strict=True):
        assert tag == "tag"
        np.testing.assert_array_equal(mc.to_numpy(a), b)
    assert list(DeviceFeed([])) == []


def test_feed_trains_a_net_like_host_batches(rng):
    """The feed's arrays stand in for host arrays in a training loop."""
    cuda_backend()
    net = mc.models.tiny_alexnet(num_classes=5, input_size=16)
    data = [(rng.standard_normal((2, 3, 16, 16)), rng.integers(0, 5, 2)) for _ in range(2)]
    for x, labels in DeviceFeed(data):
        loss, d = mc.losses.softmax_cross_entropy(net.forward(x, train=False), labels)
        assert np.isfinite(float(loss))


@pytest.mark.parametrize("name", ["numpy", "cpu"])
def test_feed_passes_batches_through_on_host_backends(name):
    try:
        mc.set_backend(name)
    except mc.BackendUnavailable as e:
        pytest.skip(str(e))
    batches = list(host_batches([2, 3]))
    got = list(DeviceFeed(batches))
    assert len(got) == len(batches) and all(a is b for a, b in zip(got, batches, strict=True))

