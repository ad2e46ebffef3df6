"""Ops: forward and backward math of each op, written once with ``xp``.

Each file holds one op; its docstring states the formula. Hot spots are marked
``@hot_path`` (see :mod:`minicnn.backend`) so that the cpu and cuda backends can run a
kernel of the same name instead of the NumPy reference.
"""
