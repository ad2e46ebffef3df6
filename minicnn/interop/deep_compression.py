"""Han et al.'s Deep Compression weight files (``compressed_SqueezeNet.net``), read with NumPy.

The format (Han, Mao and Dally, ICLR 2016; the layout of the reference decoder ``decode.py``
of songhan/SqueezeNet-Deep-Compression), all little-endian, no padding:

- header: one uint32 per layer with weights, in the prototxt's layer order: n, the number
  of stored (non-zero) weights of that layer;
- then per layer, in that order:
  - the codebook: 2**b float32 values, b = 8 bits for a Convolution, 4 for an InnerProduct;
  - the biases: one float32 per output (the layer's whole bias, uncompressed);
  - the codes: n indices into the codebook, b bits each, ``ceil(n * b / 8)`` bytes (two
    4-bit codes share a byte, the first in the low nibble);
  - the index gaps: n 4-bit values, ``ceil(n / 2)`` bytes, low nibble first. Stored weight
    i sits at position p_i = p_{i-1} + gap_i + 1 (p_{-1} = -1) of the weight blob flattened
    in C order (O, C/group, kh, kw). A gap longer than 15 is bridged by a stored weight
    whose code means zero; positions not reached are zero (the reference decoder's).

So a layer's weights are ``codebook[code]`` with code scattered to the positions, its
biases as stored. The file has nothing else: its size follows from the header and the
prototxt, and a count that does not fit its layer, a file that ends inside a layer, or
bytes left over after the last layer is refused naming the layer.
"""

from __future__ import annotations

import os

import numpy as np

from minicnn.errors import InputError

BITS = {"Convolution": 8, "InnerProduct": 4}


def _layer_bytes(n, bits, biases):
    codes = (n * bits + 7) // 8
    return 4 * (2 ** bits) + 4 * biases + codes + (n + 1) // 2


def read(path, layers) -> dict:
    """{layer name: [weight, bias]} (float32, ``weight_shape`` and (outputs,)) of the Deep
    Compression file ``path``; ``layers`` is [(name, type, weight_shape, bias_size)] of the
    layers with weights in prototxt order, type "Convolution" or "InnerProduct"."""
    path = os.fspath(path)
    name_of = os.path.basename(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if not layers:
        raise InputError(f"{path}: the prototxt has no Convolution or InnerProduct layer to read "
                         "Deep Compression weights for")
    head = 4 * len(layers)
    if len(data) < head:
        raise InputError(f"{path}: {len(data)} bytes, shorter than the header of {len(layers)} "
                         f"counts (one per layer with weights, {head} bytes): not a Deep Compression "
                         "file of this prototxt")
    counts = np.frombuffer(data, dtype="<u4", count=len(layers)).astype(np.int64)
    for (name, kind, shape, _), n in zip(layers, counts, strict=True):
        if kind not in BITS:
            raise InputError(f"{name_of}: layer {name!r} ({kind}): Deep Compression stores "
                             "Convolution and InnerProduct layers only")
        size = int(np.prod(shape))
        if n > size:
            raise InputError(f"{name_of}: layer {name!r}: the header gives {n} stored weights, the "
                             f"layer has {size} {tuple(shape)}: the file does not fit the prototxt")
    result, offset = {}, head
    for (name, kind, shape, biases), n in zip(layers, counts, strict=True):
        n, bits = int(n), BITS[kind]
        need = _layer_bytes(n, bits, biases)
        if offset + need > len(data):
            raise InputError(f"{name_of}: truncated: layer {name!r} needs {need} bytes at offset "
                             f"{offset}, the file has {len(data) - offset} left")
        codebook = np.frombuffer(data, dtype="<f4", count=2 ** bits, offset=offset)
        offset += 4 * 2 ** bits
        bias = np.frombuffer(data, dtype="<f4", count=biases, offset=offset).astype(np.float32)
        offset += 4 * biases
        code_bytes = np.frombuffer(data, dtype=np.uint8, count=(n * bits + 7) // 8, offset=offset)
        offset += len(code_bytes)
        gap_bytes = np.frombuffer(data, dtype=np.uint8, count=(n + 1) // 2, offset=offset)
        offset += len(gap_bytes)
        codes = code_bytes if bits == 8 else _nibbles(code_bytes, n)
        positions = np.cumsum(_nibbles(gap_bytes, n).astype(np.int64) + 1) - 1
        size = int(np.prod(shape))
        if n and positions[-1] >= size:
            raise InputError(f"{name_of}: layer {name!r}: the index gaps reach position "
                             f"{int(positions[-1])}, the layer has {size} weights {tuple(shape)}")
        # positions not stored are zero whatever codebook[0] is, as in the reference decoder
        weight = np.zeros(size, dtype=np.float32)
        weight[positions] = codebook[codes[:n]]
        weight = weight.reshape(shape)
        if not (np.isfinite(codebook).all() and np.isfinite(bias).all()):
            raise InputError(f"{name_of}: layer {name!r}: the codebook or the biases hold "
                             "non-finite values")
        result[name] = [weight, bias]
    if offset != len(data):
        raise InputError(f"{name_of}: {len(data) - offset} bytes left over after the last layer "
                         f"{layers[-1][0]!r}: the file does not fit the prototxt")
    return result


def _nibbles(packed, n):
    """n 4-bit values, two per byte, the first in the low nibble."""
    out = np.empty(2 * len(packed), dtype=np.uint8)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    return out[:n]

