import os
import subprocess
import sys

import pytest

import minicnn as mc
from minicnn.cli import main


def test_gradcheck_command_passes_and_prints_a_table(capsys):
    assert main(["gradcheck", "--op", "relu", "--op", "lrn", "--mode", "exhaustive"]) == 0
    out = capsys.readouterr().out
    assert "relu" in out and "lrn size 4" in out and "PASS" in out
    assert "softmax" not in out and "tiny AlexNet-like net" not in out
    assert main(["gradcheck", "--op", "softmax"]) == 0
    out = capsys.readouterr().out
    assert "softmax_cross_entropy weighted" in out and "relu" not in out


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        mc.set_backend("tpu")


def test_cuda_without_gpu_exits_2_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed: a GPU may be present")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, "-m", "minicnn", "gradcheck", "--backend", "cuda"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert "error: backend 'cuda'" in out.stderr and "Traceback" not in out.stderr
