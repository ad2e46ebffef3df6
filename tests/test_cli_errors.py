"""The CLI's error policy (issue 14): a user error (InputError, BackendUnavailable) is one
line and exit code 2; any other exception is a bug and propagates with its traceback."""

import importlib.metadata

import pytest

import minicnn
from minicnn import gradcheck, runrecord
from minicnn.cli import main
from minicnn.errors import InputError


def _raise(error):
    def broken(*args, **kwargs):
        raise error
    return broken


@pytest.mark.parametrize("bug", [ValueError("bug"), FileNotFoundError("bug"), KeyError("bug")])
def test_a_bug_shows_its_traceback(monkeypatch, bug):
    # an internal function failing with a plain ValueError (or FileNotFoundError) is not a
    # user error: main must not turn it into "error: ..." and exit code 2
    monkeypatch.setattr(gradcheck, "standard_cases", _raise(bug))
    with pytest.raises(type(bug), match="bug"):
        main(["gradcheck", "--op", "relu"])


def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(gradcheck, "standard_cases", _raise(InputError("net.npz: no such file")))
    monkeypatch.delenv("MINICNN_DEBUG", raising=False)
    assert main(["gradcheck", "--op", "relu"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "minicnn gradcheck: error: net.npz: no such file\n"
    assert "Traceback" not in captured.err


def test_minicnn_debug_reraises_a_user_error(monkeypatch):
    monkeypatch.setattr(gradcheck, "standard_cases", _raise(InputError("net.npz: no such file")))
    monkeypatch.setenv("MINICNN_DEBUG", "1")
    with pytest.raises(InputError, match="net.npz: no such file"):
        main(["gradcheck", "--op", "relu"])


def test_input_error_is_a_value_error():
    # library callers may catch either
    assert issubclass(InputError, ValueError)


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"minicnn {importlib.metadata.version('minicnn')}\n"


def test_version_falls_back_to_the_source_tree(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert runrecord.package_version() == minicnn.__version__ == "0.1.0"
