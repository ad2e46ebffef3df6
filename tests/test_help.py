"""One help convention for every command (issue 26, defect 7): every option and argument has
a help text; every default is shown from the code by the formatter, never typed by hand;
the description's line breaks (its examples) are kept."""

import argparse

import pytest

from minicnn.cli import COMMANDS, HelpFormatter, build_parser, main


def parsers():
    """(name, parser) of every command and sub-command (convert coco, convert yolo)."""
    out = []

    def walk(name, parser):
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}".strip(), sub)

    walk("", build_parser())
    return [(name, p) for name, p in out if name]


def options(parser):
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    return [a for a in shown if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def test_every_command_is_walked():
    names = {name.split()[0] for name, _ in parsers()}
    assert names == set(COMMANDS)
    assert {"convert coco", "convert yolo"} <= {name for name, _ in parsers()}


@pytest.mark.parametrize("name,parser", parsers(), ids=[n for n, _ in parsers()])
def test_every_option_has_help_and_its_default_from_the_code(name, parser):
    assert parser.formatter_class is HelpFormatter, name
    text = parser.format_help()
    for action in options(parser):
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"minicnn {name} {label}: no help text"
        if action.default not in (None, False) and action.option_strings:
            # the formatter shows the default; a help text typing it (or saying "default") would
            # repeat it, or go stale when the code changes it
            assert "default" not in action.help, f"minicnn {name} {label}: default typed into {action.help!r}"
            shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) \
                else str(action.default)
            assert f"(default: {shown})" in " ".join(text.split()), f"minicnn {name} {label}"


def test_no_default_depends_on_the_machine(monkeypatch):
    # a default computed from the CPU count would print "2" on one machine and "64" on another
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 12345)
    for name, parser in parsers():
        assert "12345" not in parser.format_help(), name


def test_the_examples_keep_their_line_breaks(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    out = capsys.readouterr().out
    assert "--variant update-fc67 \\\n      --train-set train" in out


def test_an_option_without_a_default_value_shows_none(capsys):
    # a flag off by default and an option whose default is None show no "(default: ...)"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out and "(default: False)" not in out
    assert "--year YEAR dataset year (default: 2007)" in out
