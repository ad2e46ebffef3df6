"""Winograd convolution (``minicnn/ops/winograd.py``, ``winograd_conv.py``): the Toom-Cook matrices, each cpu
transform kernel against its NumPy reference, the whole algorithm against the direct
convolution forward and backward, and its gradient against finite differences.

Transform kernels and float64 results agree to rtol 1e-4 / 1e-10 as every kernel does. In
float32 Winograd's rounding differs from the direct sum's by a bounded amount relative to
the tensor's scale (the transforms scale terms up and down): max |error| <= 1e-4 max |ref|
on random data, and the defaults stay within 2e-5 on AlexNet-like layers (measured 4e-6
for F(4x4, 3x3) on conv3, 1e-5 for F(3x3, 5x5) on conv2, at batch 4)."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import gradcheck
from minicnn import layers as L
from minicnn.ops import conv2d as conv_op
from minicnn.ops import winograd, winograd_conv

pytest.importorskip("numba")

KERNELS = mc.backend.backend_named("cpu").kernels
SCALE_TOL = {np.float32: 1e-4, np.float64: 1e-10}
TILES = [(2, 3), (4, 3), (2, 5), (3, 5), (3, 2)]  # (m, r)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def close_to_scale(actual, expected, dtype, err_msg=""):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, err_msg
    error = np.abs(actual - expected).max()
    assert error <= SCALE_TOL[dtype] * max(np.abs(expected).max(), 1e-30), (err_msg, error)


@pytest.mark.parametrize("m,r", TILES)
def test_matrices_compute_the_correlation(m, r, rng):
    AT, G, BT = winograd.matrices(m, r)
    assert AT.shape == (m, m + r - 1) and G.shape == (m + r - 1, r) and BT.shape == (m + r - 1,) * 2
    for _ in range(3):
        g, d = rng.standard_normal(r), rng.standard_normal(m + r - 1)
        expected = [sum(g[k] * d[i + k] for k in range(r)) for i in range(m)]
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), expected, rtol=1e-12, atol=1e-12)


def test_f2x3_matrices_are_lavins_up_to_sign():
    AT, G, BT = winograd.matrices(2, 3)
    # entries 0, +-1, +-1/2 only: exact in floating point
    assert set(np.abs(np.concatenate([AT.ravel(), G.ravel(), BT.ravel()]))) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(np.abs(G), [[1, 0, 0], [.5, .5, .5], [.5, .5, .5], [0, 0, 1]])


# (N, C, H, W), r, m, padding: odd sizes, H != W, padding above r - 1, a batch that is not
# a multiple of the kernels' image blocks, batch 1
TRANSFORM_CASES = [
    ((2, 3, 7, 9), 3, 2, (1, 1)),
    ((9, 2, 13, 13), 3, 4, (1, 1)),
    ((1, 2, 6, 5), 3, 4, (0, 2)),
    ((3, 2, 11, 10), 5, 2, (2, 2)),
    ((2, 3, 5, 6), 3, 2, (3, 0)),
]


@pytest.mark.parametrize("shape,r,m,padding", TRANSFORM_CASES)
def test_transform_kernels_match_their_references(shape, r, m, padding, dtype, rng):
    N, C, H, W = shape
    O = 4
    AT, _, BT = winograd.matrices(m, r)
    n = m + r - 1
    OH, OW = H + 2 * padding[0] - r + 1, W + 2 * padding[1] - r + 1
    TH, TW = winograd.tiles_of(OH, m), winograd.tiles_of(OW, m)
    T = N * TH * TW
    wide = rng.standard_normal((N, C, H, 2 * W)).astype(dtype)
    x = wide[..., ::2]  # not contiguous
    cases = {
        "winograd_input_transform": lambda: (x, BT, m, *padding, TH, TW, np.empty((n * n, C, T), dtype)),
        "winograd_input_adjoint": lambda: (rng.standard_normal((n * n, C, T)).astype(dtype), BT, m,
                                           *padding, TH, TW, np.empty(shape, dtype)),
        "winograd_output_transform": lambda: (rng.standard_normal((n * n, O, T)).astype(dtype), AT,
                                              rng.standard_normal(O).astype(dtype),
                                              np.empty((N, O, OH, OW), dtype)),
        "winograd_output_adjoint": lambda: (rng.standard_normal((N, O, OH, OW)).astype(dtype), AT,
                                            np.empty((n * n, O, T), dtype)),
    }
    for name, make_args in cases.items():
        args = make_args()
        expected = getattr(winograd, name).reference(*args[:-1], np.full_like(args[-1], np.nan))
        got = KERNELS[name](*args[:-1], np.full_like(args[-1], np.nan))
        close_to_scale(got, expected, dtype, name)


def direct_and_winograd(x, weight, bias, dy, padding, groups, need_dx=True, backend="cpu"):
    mc.set_backend("numpy")
    direct = (conv_op.conv2d_forward(x, weight, bias, 1, padding, groups),) + conv_op.conv2d_backward(
        dy, x, weight, 1, padding, groups, need_dx=need_dx)
    mc.set_backend(backend)
    m, budget = conv_op.WINOGRAD_TILE[weight.shape[2]], conv_op.WORKSPACE_BYTES
    fast = (winograd_conv.forward(x, weight, bias, 1, padding, groups, m, budget=budget),) + \
        winograd_conv.backward(dy, x, weight, 1, padding, groups, m, need_dx, True, budget=budget)
    mc.set_backend("numpy")
    return direct, fast


@pytest.mark.parametrize("backend", ["cpu", "numpy"], ids=["kernels", "reference"])
@pytest.mark.parametrize("m,r", TILES)
@pytest.mark.parametrize("shape,out,padding,groups,chunked", [
    ((2, 4, 9, 7), 6, 1, 2, False),
    ((1, 3, 6, 6), 4, 0, 1, False),
    ((5, 2, 8, 11), 3, 2, 1, True),
])
def test_winograd_convolution_equals_the_direct_one(shape, out, padding, groups, chunked, m, r,
                                                    backend, dtype, rng, monkeypatch):
    monkeypatch.setitem(conv_op.WINOGRAD_TILE, r, m)
    if chunked:
        monkeypatch.setattr(conv_op, "WORKSPACE_BYTES", 1)  # one image per chunk
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((out, shape[1] // groups, r, r)).astype(dtype)
    bias = rng.standard_normal(out).astype(dtype)
    OH, OW = shape[2] + 2 * padding - r + 1, shape[3] + 2 * padding - r + 1
    dy = rng.standard_normal((shape[0], out, OH, OW)).astype(dtype)
    for need_dx in (True, False):
        direct, fast = direct_and_winograd(x, weight, bias, dy, padding, groups, need_dx, backend)
        for name, a, b in zip(("y", "dx", "dw", "db"), fast, direct, strict=True):
            if b is None:
                assert a is None, name
            else:
                close_to_scale(a, b, dtype, name)


@pytest.mark.parametrize("shape,out,r,padding,groups", [
    ((2, 48, 27, 27), 64, 5, 2, 2),   # conv2, narrower
    ((2, 64, 13, 13), 96, 3, 1, 1),   # conv3, narrower
])
def test_default_tiles_in_float32_stay_close_on_alexnet_like_layers(shape, out, r, padding, groups, rng):
    x = np.maximum(rng.standard_normal(shape), 0)  # post-ReLU activations
    weight = rng.standard_normal((out, shape[1] // groups, r, r)) * 0.05
    dy = rng.standard_normal((shape[0], out, shape[2], shape[3]))
    exact, _ = direct_and_winograd(x, weight, None, dy, padding, groups)
    f32 = [a.astype(np.float32) for a in (x, weight, dy)]
    _, fast = direct_and_winograd(f32[0], f32[1], None, f32[2], padding, groups)
    for name, a, b in zip(("y", "dx", "dw"), fast, exact[:3], strict=False):
        assert np.abs(a - b).max() <= 2e-5 * np.abs(b).max(), name


@pytest.mark.parametrize("shape,out,k,stride,padding,groups", [
    ((2, 3, 35, 35), 5, 11, 4, 0, 1),   # AlexNet's conv1, smaller: 3x3 after space-to-depth
    ((2, 4, 13, 12), 6, 5, 2, 2, 2),    # padding, groups, odd sizes
    ((1, 2, 9, 10), 3, 6, 2, 1, 1),     # even filter: ceil(6 / 2) = 3
])
def test_strided_convolution_through_space_to_depth_equals_the_direct_one(
        shape, out, k, stride, padding, groups, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((out, shape[1] // groups, k, k)).astype(dtype)
    bias = rng.standard_normal(out).astype(dtype)
    OH = (shape[2] + 2 * padding - k) // stride + 1
    OW = (shape[3] + 2 * padding - k) // stride + 1
    dy = rng.standard_normal((shape[0], out, OH, OW)).astype(dtype)
    mc.set_backend("numpy")
    direct = (conv_op.conv2d_forward(x, weight, bias, stride, padding, groups),) + conv_op.conv2d_backward(
        dy, x, weight, stride, padding, groups)
    mc.set_backend("cpu")
    try:
        assert conv_op.winograd_tile(weight.shape, stride)
        for keep in (None, {}):
            y = conv_op.conv2d_forward(x, weight, bias, stride, padding, groups, keep=keep)
            grads = conv_op.conv2d_backward(dy, x, weight, stride, padding, groups, kept=keep)
            for name, a, b in zip(("y", "dx", "dw", "db"), (y,) + grads, direct, strict=True):
                close_to_scale(a, b, dtype, name)
    finally:
        mc.set_backend("numpy")


def test_space_to_depth_and_its_adjoint(rng):
    x = rng.standard_normal((2, 3, 7, 9))
    xs = winograd_conv.space_to_depth(x, 4, 1, 2, 3, 3)
    assert xs.shape == (2, 48, 3, 3)
    assert xs[1, 2 * 16 + 1 * 4 + 3, 1, 1] == x[1, 2, 4 + 1 - 1, 4 + 3 - 2]  # padding (1, 2)
    # adjoint: <S x, z> = <x, S^T z>
    z = rng.standard_normal(xs.shape)
    assert np.isclose((xs * z).sum(), (x * winograd_conv.depth_to_space(z, 4, 1, 2, 7, 9)).sum())
    w = rng.standard_normal((5, 3, 11, 11))
    ws = winograd_conv.filter_to_depth(w, 4)
    assert ws.shape == (5, 48, 3, 3)
    np.testing.assert_array_equal(winograd_conv.depth_to_filter(ws, 4, 11), w)


def test_cpu_backend_picks_winograd_where_a_tile_size_is_set(monkeypatch):
    mc.set_backend("cpu")
    try:
        assert conv_op.winograd_tile((8, 4, 3, 3), 1) == conv_op.WINOGRAD_TILE[3]
        assert conv_op.winograd_tile((8, 4, 5, 5), 1) == conv_op.WINOGRAD_TILE[5]
        assert conv_op.winograd_tile((8, 4, 11, 11), 4) == conv_op.WINOGRAD_TILE[3]  # via 3x3
        assert conv_op.winograd_tile((8, 4, 3, 3), 2) is None  # 2x2 after space-to-depth
        assert conv_op.winograd_tile((8, 4, 11, 11), 1) is None
        assert conv_op.winograd_tile((8, 4, 3, 3), (1, 2)) is None
        assert conv_op.winograd_tile((8, 4, 3, 2), 1) is None
        monkeypatch.setattr(conv_op, "WINOGRAD_BACKENDS", ())
        assert conv_op.winograd_tile((8, 4, 3, 3), 1) is None
    finally:
        mc.set_backend("numpy")
    assert conv_op.winograd_tile((8, 4, 3, 3), 1) is None  # the reference computes the definition


@pytest.mark.parametrize("m,stride,kernel", [(2, 1, 3), (4, 1, 3), (4, 2, 5)])
def test_winograd_gradient_against_finite_differences(m, stride, kernel, monkeypatch):
    monkeypatch.setitem(conv_op.WINOGRAD_TILE, 3, m)
    mc.set_backend("cpu")
    try:
        layer = L.Conv2D(4, 6, kernel, stride=stride, padding=1, groups=2, dtype=np.float64)
        assert conv_op.winograd_tile(layer.params["weight"].shape, layer.stride) == m
        result = gradcheck.check_layer(layer, gradcheck.kinkless_input((2, 4, 5, 7)), mode="exhaustive")
    finally:
        mc.set_backend("numpy")
    assert result.passed(), result.table()


def test_kept_transformed_input_serves_the_backward_of_the_same_input_only(rng):
    x, x2 = (rng.standard_normal((3, 4, 9, 9)).astype(np.float32) for _ in range(2))
    weight = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((3, 6, 9, 9)).astype(np.float32)
    mc.set_backend("cpu")
    try:
        keep = {}
        conv_op.conv2d_forward(x, weight, None, 1, 1, keep=keep)
        assert keep["x"] is x and keep["V"].shape == (36, 4, 3 * 9)  # F(4x4, 3x3): 3x3 tiles
        kept = conv_op.conv2d_backward(dy, x, weight, 1, 1, kept=keep)
        recomputed = conv_op.conv2d_backward(dy, x, weight, 1, 1)
        for a, b in zip(kept, recomputed, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        # kept for x, asked for x2: recomputed for x2
        for a, b in zip(conv_op.conv2d_backward(dy, x2, weight, 1, 1, kept=keep),
                        conv_op.conv2d_backward(dy, x2, weight, 1, 1), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        buffer = keep["V"]
        conv_op.conv2d_forward(x2, weight, None, 1, 1, keep=keep)
        assert keep["V"] is buffer and keep["x"] is x2  # the buffer serves the next step
    finally:
        mc.set_backend("numpy")


def test_transformed_input_over_the_budget_is_recomputed_in_the_backward(rng, monkeypatch):
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    weight = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((3, 6, 9, 9)).astype(np.float32)
    monkeypatch.setattr(conv_op, "KEEP_BYTES", 36 * 4 * 27 * 4 - 1)  # one byte short
    mc.set_backend("cpu")
    try:
        keep = {"V": np.empty(1, np.float32)}  # an earlier step's buffer is let go
        conv_op.conv2d_forward(x, weight, None, 1, 1, keep=keep)
        assert "V" not in keep and keep["x"] is x and keep["U"].shape == (36, 6, 4)
        for a, b in zip(conv_op.conv2d_backward(dy, x, weight, 1, 1, kept=keep),
                        conv_op.conv2d_backward(dy, x, weight, 1, 1), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        monkeypatch.setattr(conv_op, "KEEP_BYTES", 36 * 4 * 27 * 4)  # exactly fits
        conv_op.conv2d_forward(x, weight, None, 1, 1, keep=keep)
        assert keep["V"].shape == (36, 4, 27)
    finally:
        mc.set_backend("numpy")
