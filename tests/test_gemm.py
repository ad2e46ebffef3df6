"""``gemm`` and ``gemm_batched`` on every backend (numpy, cpu, cuda: the simulator without a
GPU): out = a @ b, and with accumulate=True out + a @ b, on transposed operands and a
strided out, at sizes where the cpu backend splits the products over its threads."""

import numpy as np
import pytest
from cuda_support import cuda_backend

import minicnn as mc
from minicnn.ops.gemm import gemm, gemm_batched

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=["numpy", "cpu-1", "cpu-2", "cuda"])
def backend(request):
    """The backend current; "cpu-2" with two Numba threads, the products split over them."""
    if request.param == "cuda":
        cuda_backend()
        yield
        return
    if request.param == "numpy":
        yield
        return
    numba = pytest.importorskip("numba")
    threads = int(request.param[-1])
    if numba.config.NUMBA_NUM_THREADS < threads:
        pytest.skip(f"needs {threads} threads")
    mc.set_backend("cpu")
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def strided_out(start, pad=2):
    """``start``'s values in a view whose rows have gaps (not contiguous), and the whole buffer."""
    wide = np.zeros(start.shape[:-1] + (start.shape[-1] + 2 * pad,), start.dtype)
    wide[..., pad:-pad] = start
    wide = mc.asarray(wide)
    return wide[..., pad:-pad], wide


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("M,K,N", [(70, 300, 250), (260, 300, 40), (33, 5000, 47), (5, 7, 3)])
def test_gemm_writes_or_adds_the_product(backend, M, K, N, accumulate, dtype, rng):
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((N, K)).astype(dtype).T  # a transposed view, as conv's dW uses
    start = rng.standard_normal((M, N)).astype(dtype)
    out, wide = strided_out(start)
    assert gemm(mc.asarray(a), mc.asarray(b), out, accumulate=accumulate) is out
    expected = start + a @ b if accumulate else a @ b
    # entries are sums of K products of size ~1: their rounding scales with sqrt(K)
    np.testing.assert_allclose(mc.to_numpy(out), expected, rtol=RTOL[dtype], atol=RTOL[dtype] * np.sqrt(K))
    assert not mc.to_numpy(wide)[:, :2].any() and not mc.to_numpy(wide)[:, -2:].any()


@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_batched_writes_or_adds_every_product(backend, accumulate, dtype, rng):
    """Winograd's products: (positions, groups) stacks, transposed and strided views."""
    a = rng.standard_normal((9, 2, 40, 6)).astype(dtype).transpose(0, 1, 3, 2)  # (9, 2, 6, 40)
    b = rng.standard_normal((9, 2, 40, 7)).astype(dtype)
    start = rng.standard_normal((9, 2, 6, 7)).astype(dtype)
    out, wide = strided_out(start, pad=1)
    assert gemm_batched(mc.asarray(a), mc.asarray(b), out, accumulate=accumulate) is out
    expected = start + np.matmul(a, b) if accumulate else np.matmul(a, b)
    np.testing.assert_allclose(mc.to_numpy(out), expected, rtol=RTOL[dtype], atol=RTOL[dtype] * np.sqrt(40))
    assert not mc.to_numpy(wide)[..., 0].any() and not mc.to_numpy(wide)[..., -1].any()


@pytest.mark.parametrize("blocks", [2, 4])
@pytest.mark.parametrize("M,K,N", [(300, 300, 250), (70, 2000, 300)])  # cut along M, along N
def test_cpu_gemm_gives_the_same_bits_with_any_number_of_threads(monkeypatch, blocks, M, K, N, rng):
    """The cpu backend cuts the output by shape, not by threads: BLAS rounds a block's
    products differently from a wider block's, so a cut that followed the threads would
    make a run's bits depend on them (and N ranks could not equal one process)."""
    numba = pytest.importorskip("numba")
    import importlib

    cpu_gemm = importlib.import_module("minicnn.kernels.cpu.gemm")  # the module, not its function
    monkeypatch.setattr(cpu_gemm, "BLOCKS", blocks)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32).T
    before = numba.get_num_threads()
    products = []
    try:
        for threads in range(1, min(3, numba.config.NUMBA_NUM_THREADS) + 1):
            numba.set_num_threads(threads)
            products.append(cpu_gemm.gemm(a, b, np.empty((M, N), np.float32)))
    finally:
        numba.set_num_threads(before)
    assert len(products) >= 2 or numba.config.NUMBA_NUM_THREADS == 1
    for p in products[1:]:
        assert np.array_equal(p, products[0])
    np.testing.assert_allclose(products[0], a @ b, rtol=1e-4, atol=1e-4 * np.sqrt(K))
