import subprocess
import sys

import minicnn as mc


def test_public_surface_imports():
    assert mc.get_backend().name == "numpy"
    import minicnn.kernels  # noqa: F401  (installed from kernels/ through package_dir)


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "minicnn", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "gradcheck" in out.stdout and "demo" in out.stdout
