"""Winograd minimal filtering F(m x m, r x r): stride-1 convolution with fewer multiplications
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

The output is cut into m x m tiles; each needs the n x n input tile (n = m + r - 1) that
starts at its top-left corner, tiles overlapping by r - 1. With A^T (m x n), G (n x r),
B^T (n x n) the Toom-Cook matrices of :func:`matrices`, one tile of one (output, input)
channel pair is

    Y = A^T [ (G g G^T) * (B^T d B) ] A              (* elementwise)

and the sum over input channels moves inside the brackets, where it is, for each of the
n^2 positions (xi, nu) of the transformed tile, a matrix product over all tiles at once:

    U[k] = (G g G^T)[k]  (O, C/groups)     V[k] = (B^T d B)[k]  (C, tiles)     M[k] = U[k] V[k]

for k = (xi, nu), one GEMM per k and group. An output needs n^2/m^2 multiplies per input
channel instead of r^2: F(2x2, 3x3) 4 instead of 9, F(2x2, 5x5) 9 instead of 25, when the
output size is a multiple of m (otherwise the last tiles are partly wasted).

Backward is the same computation transposed, exact for this linear map:

    dM[k] = (A dY A^T)[k]   dU[k] = dM[k] V[k]^T   dg = G^T dU G
    dV[k] = U[k]^T dM[k]    dd = B dV B^T, added back where each input tile was read

This module is the NumPy reference of the transforms (``@hot_path``: the cpu and cuda
backends run kernels); :mod:`minicnn.ops.winograd_conv` drives them over a convolution,
and :mod:`minicnn.ops.conv2d` says when it chooses this algorithm.
The transforms are exact in rational arithmetic; in floating point F(2x2, 3x3) has
entries 0, +-1, +-1/2 only, while larger tiles trade accuracy for speed (measured in
``tests/test_winograd.py``).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from minicnn.backend import array_module, hot_path

# Toom-Cook points in the order they are taken: F(m, r) uses the first m + r - 2 and
# infinity. Which points matters for float32: with 1/2 and -2 before 2, F(4x4, 3x3) errs
# 4e-6 of the output's scale instead of 1.5e-5, and F(3x3, 5x5) 5e-6 instead of 1e-4
# with 3 (Barabasz et al., "Error analysis and improving the accuracy of Winograd
# convolution for deep neural networks", 2018, found the same).
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-2), Fraction(2),
          Fraction(-1, 2), Fraction(3), Fraction(-1, 3))


@functools.cache
def matrices(m: int, r: int):
    """(A^T, G, B^T) of F(m, r) as float64 arrays, from the Toom-Cook points p of ``POINTS``
    and infinity: A^T[i, j] = p_j^i, G[j, k] = p_j^k / prod_{l != j} (p_j - p_l), the
    infinity column and row picking the top coefficient, and B^T solved exactly so that
    A^T [(G g) * (B^T d)] is the correlation y_i = sum_k g_k d_{i+k}."""
    n = m + r - 1
    if n - 1 > len(POINTS):
        raise ValueError(f"Winograd F({m}, {r}) needs {n - 1} points; POINTS has {len(POINTS)}")
    points = list(POINTS[: n - 1])
    AT = [[p**i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    G = []
    for j, p in enumerate(points):
        f = Fraction(1)
        for q in points[:j] + points[j + 1:]:
            f *= p - q
        G.append([p**k / f for k in range(r)])
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    # sum_j AT[i, j] G[j, k] BT[j, t] = [t == i + k] for every i, k: n unknowns per column t
    rows = [[AT[i][j] * G[j][k] for j in range(n)] for i in range(m) for k in range(r)]
    BT = [[None] * n for _ in range(n)]
    for t in range(n):
        column = _solve_exact(rows, [Fraction(int(t == i + k)) for i in range(m) for k in range(r)])
        for j in range(n):
            BT[j][t] = column[j]
    return tuple(_read_only(a) for a in (AT, G, BT))


def _read_only(rows):
    a = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    a.flags.writeable = False  # cached and shared
    return a


def _solve_exact(rows, rhs):
    """The solution of the consistent, full-column-rank system ``rows x = rhs`` (Fractions)."""
    n = len(rows[0])
    aug = [list(row) + [b] for row, b in zip(rows, rhs, strict=True)]
    for c in range(n):
        pivot = next(i for i in range(c, len(aug)) if aug[i][c] != 0)
        aug[c], aug[pivot] = aug[pivot], aug[c]
        aug[c] = [v / aug[c][c] for v in aug[c]]
        for i in range(len(aug)):
            if i != c and aug[i][c] != 0:
                f = aug[i][c]
                aug[i] = [a - f * b for a, b in zip(aug[i], aug[c], strict=True)]
    assert all(row[n] == 0 for row in aug[n:]), "Toom-Cook system is inconsistent"
    return [aug[i][n] for i in range(n)]


_constants: dict = {}


def constant(xp, matrix, dtype):
    """``matrix`` (small, float64, numpy) as an ``xp`` array of ``dtype``, made once and kept:
    on the GPU the filter transforms' G kron G then costs no host-to-device copy per step."""
    device = None if xp is np else xp.cuda.Device().id  # CuPy: one copy per GPU
    key = (xp.__name__, device, matrix.shape, matrix.tobytes(), np.dtype(dtype).str)
    a = _constants.get(key)
    if a is None:
        a = _constants[key] = xp.array(matrix, dtype=dtype)
    return a


def tiles_of(out_size: int, m: int) -> int:
    return -(-out_size // m)


@hot_path
def winograd_input_transform(x, BT, m, ph, pw, TH, TW, out):
    """out (n*n, C, N*TH*TW) <- B^T d B of every input tile d of x (N, C, H, W), the tile of
    output tile (t, u) being the zero-padded rows t*m - ph ... and columns u*m - pw ...;
    returns out."""
    xp = array_module(x)
    N, C, H, W = x.shape
    n = BT.shape[0]
    Hp, Wp = TH * m + n - m, TW * m + n - m
    xpad = xp.zeros((N, C, Hp, Wp), dtype=x.dtype)
    h, w = min(H, Hp - ph), min(W, Wp - pw)
    xpad[:, :, ph : ph + h, pw : pw + w] = x[:, :, :h, :w]
    s0, s1, s2, s3 = xpad.strides
    tiles = xp.lib.stride_tricks.as_strided(
        xpad, shape=(N, C, TH, TW, n, n), strides=(s0, s1, m * s2, m * s3, s2, s3))
    bt = xp.asarray(BT, dtype=x.dtype)
    v = xp.einsum("ia,jb,NCtuab->ijCNtu", bt, bt, tiles, optimize=True)
    out.reshape(n, n, C, N, TH, TW)[...] = v
    return out


@hot_path
def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    """out (N, C, H, W) <- the adjoint of :func:`winograd_input_transform`: B dV B^T of every
    tile added back where the tile was read, padding dropped; returns out."""
    xp = array_module(dV)
    N, C, H, W = out.shape
    n = BT.shape[0]
    bt = xp.asarray(BT, dtype=dV.dtype)
    d = xp.einsum("ia,jb,ijCNtu->NCtuab", bt, bt, dV.reshape(n, n, C, N, TH, TW), optimize=True)
    dpad = xp.zeros((N, C, TH * m + n - m, TW * m + n - m), dtype=dV.dtype)
    for a in range(n):
        for b in range(n):
            dpad[:, :, a : a + TH * m : m, b : b + TW * m : m] += d[..., a, b]
    out[...] = 0
    h, w = min(H, dpad.shape[2] - ph), min(W, dpad.shape[3] - pw)
    out[:, :, :h, :w] = dpad[:, :, ph : ph + h, pw : pw + w]
    return out


@hot_path
def winograd_output_transform(M, AT, bias, out):
    """out (N, O, OH, OW) <- A^T M A of every tile of M (n*n, O, N*TH*TW), cropped to the
    output, plus bias[o] (bias may be None); returns out."""
    xp = array_module(M)
    N, O, OH, OW = out.shape
    m, n = AT.shape
    TH, TW = tiles_of(OH, m), tiles_of(OW, m)
    at = xp.asarray(AT, dtype=M.dtype)
    y = xp.einsum("ui,vj,ijONtw->NOtuwv", at, at, M.reshape(n, n, O, N, TH, TW), optimize=True)
    out[...] = y.reshape(N, O, TH * m, TW * m)[:, :, :OH, :OW]
    if bias is not None:
        out += bias.reshape(1, O, 1, 1)
    return out


@hot_path
def winograd_output_adjoint(dy, AT, out):
    """out (n*n, O, N*TH*TW) <- A dY A^T of every m x m tile of dy (N, O, OH, OW), zero
    beyond the output: the adjoint of :func:`winograd_output_transform`; returns out."""
    xp = array_module(dy)
    N, O, OH, OW = dy.shape
    m, n = AT.shape
    TH, TW = tiles_of(OH, m), tiles_of(OW, m)
    dpad = xp.zeros((N, O, TH * m, TW * m), dtype=dy.dtype)
    dpad[:, :, :OH, :OW] = dy
    at = xp.asarray(AT, dtype=dy.dtype)
    dm = xp.einsum("ui,vj,NOtuwv->ijONtw", at, at, dpad.reshape(N, O, TH, m, TW, m), optimize=True)
    out.reshape(n, n, O, N, TH, TW)[...] = dm
    return out


def filter_transform(weight, G, out=None):
    """U (n*n, O, C/groups) = G g G^T of every filter g of weight (O, C/groups, r, r): one
    product by the Kronecker matrix, (G kron G)[(xi, nu), (i, j)] = G[xi, i] G[nu, j].
    Written into ``out`` when it has the shape and dtype (a buffer kept across steps)."""
    xp = array_module(weight)
    O, Cg, r, _ = weight.shape
    n2 = G.shape[0] ** 2
    kron = constant(xp, np.kron(G, G), weight.dtype)
    if out is None or out.shape != (n2, O, Cg) or out.dtype != weight.dtype:
        out = xp.empty((n2, O, Cg), dtype=weight.dtype)
    xp.matmul(kron, weight.reshape(O * Cg, r * r).T, out=out.reshape(n2, O * Cg))
    return out


def filter_adjoint(dU, G):
    """dweight (O, C/groups, r, r) = G^T dU G, the adjoint of :func:`filter_transform`."""
    xp = array_module(dU)
    n2, O, Cg = dU.shape
    r = G.shape[1]
    kron = constant(xp, np.kron(G, G), dU.dtype)
    return xp.matmul(dU.reshape(n2, O * Cg).T, kron).reshape(O, Cg, r, r)
