"""Numba CPU kernels: each function here replaces the ``@hot_path`` of the same name when
the backend is "cpu" (see :mod:`minicnn.backend`). Raw arrays in, arrays out; the math
and the NumPy reference of each live in the op of the same file name in ``minicnn/ops``.

Numba's parallel loops run on its "workqueue" thread pool unless NUMBA_THREADING_LAYER
says otherwise: its idle threads sleep. The OpenMP pool's idle threads spin, and between
two kernels the BLAS (which has threads of its own) runs a GEMM: on a machine with few
cores the two pools then take the cores from each other, and every parallel loop waits
for a descheduled thread (docs/performance.md has the measured cost).
"""

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    # set in the environment too, which Numba re-reads whenever a NUMBA_ variable changes
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    numba.config.THREADING_LAYER = "workqueue"

from minicnn.kernels.cpu.avg_pool2d import avg_pool_backward, avg_pool_forward
from minicnn.kernels.cpu.batch_norm import channel_affine
from minicnn.kernels.cpu.clip import clip_backward, clip_forward
from minicnn.kernels.cpu.conv2d import cnhw_to_nchw, nchw_to_cnhw
from minicnn.kernels.cpu.depthwise_conv2d import (
    depthwise_backward_input,
    depthwise_backward_weight,
    depthwise_forward,
)
from minicnn.kernels.cpu.dropout import dropout_apply
from minicnn.kernels.cpu.gemm import gemm, gemm_batched
from minicnn.kernels.cpu.im2col import col2im, im2col
from minicnn.kernels.cpu.lrn import lrn_backward, lrn_forward
from minicnn.kernels.cpu.max_pool2d import max_pool_backward, max_pool_forward
from minicnn.kernels.cpu.relu import relu_backward, relu_forward
from minicnn.kernels.cpu.sgd import sgd_update
from minicnn.kernels.cpu.softmax_xent import softmax_xent
from minicnn.kernels.cpu.winograd import (
    winograd_input_adjoint,
    winograd_input_transform,
    winograd_output_adjoint,
    winograd_output_transform,
)

__all__ = [
    "avg_pool_backward",
    "avg_pool_forward",
    "cnhw_to_nchw",
    "col2im",
    "channel_affine",
    "clip_backward",
    "clip_forward",
    "depthwise_backward_input",
    "depthwise_backward_weight",
    "depthwise_forward",
    "dropout_apply",
    "gemm",
    "gemm_batched",
    "im2col",
    "lrn_backward",
    "lrn_forward",
    "max_pool_backward",
    "max_pool_forward",
    "nchw_to_cnhw",
    "relu_backward",
    "relu_forward",
    "sgd_update",
    "softmax_xent",
    "winograd_input_adjoint",
    "winograd_input_transform",
    "winograd_output_adjoint",
    "winograd_output_transform",
]
