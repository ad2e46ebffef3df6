"""numba.cuda kernels of the "cuda" backend, launched on CuPy arrays on CuPy's current stream
(or, with NUMBA_ENABLE_CUDASIM=1, in Numba's simulator on NumPy arrays).

Each name in ``__all__`` replaces the ``@hot_path`` reference of the same name in
``minicnn.ops`` / ``minicnn.optim`` when the backend is current; the rest of every op runs
its ``xp`` code on CuPy, with GEMMs in cuBLAS through ``cupy.matmul``.
"""

from minicnn.kernels.cuda.avg_pool2d import avg_pool_backward, avg_pool_forward
from minicnn.kernels.cuda.batch_norm import channel_affine
from minicnn.kernels.cuda.clip import clip_backward, clip_forward
from minicnn.kernels.cuda.depthwise_conv2d import (
    depthwise_backward_input,
    depthwise_backward_weight,
    depthwise_forward,
)
from minicnn.kernels.cuda.dropout import dropout_apply
from minicnn.kernels.cuda.im2col import col2im, im2col
from minicnn.kernels.cuda.lrn import lrn_backward, lrn_forward
from minicnn.kernels.cuda.max_pool2d import max_pool_backward, max_pool_forward
from minicnn.kernels.cuda.relu import relu_backward, relu_forward
from minicnn.kernels.cuda.sgd import sgd_update
from minicnn.kernels.cuda.softmax_xent import softmax_xent
from minicnn.kernels.cuda.winograd import (
    winograd_input_adjoint,
    winograd_input_transform,
    winograd_output_adjoint,
    winograd_output_transform,
)

__all__ = [
    "avg_pool_backward",
    "avg_pool_forward",
    "col2im",
    "channel_affine",
    "clip_backward",
    "clip_forward",
    "depthwise_backward_input",
    "depthwise_backward_weight",
    "depthwise_forward",
    "dropout_apply",
    "im2col",
    "lrn_backward",
    "lrn_forward",
    "max_pool_backward",
    "max_pool_forward",
    "relu_backward",
    "relu_forward",
    "sgd_update",
    "softmax_xent",
    "winograd_input_adjoint",
    "winograd_input_transform",
    "winograd_output_adjoint",
    "winograd_output_transform",
]
