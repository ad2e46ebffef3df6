"""Flatten every axis but the batch axis: (N, C, H, W) -> (N, C*H*W); backward reshapes back."""

from __future__ import annotations


def flatten_forward(x):
    return x.reshape(x.shape[0], -1)


def flatten_backward(dy, x_shape):
    return dy.reshape(x_shape)
