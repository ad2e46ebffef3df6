"""The documentation's generated parts and its front page: the command reference holds every
command and option of the parsers the program runs, with their defaults; the README keeps
the two set-up commands (CI reads the test command from it) and stays short."""

import argparse
import importlib.util
import pathlib
import re

from minicnn.cli import COMMANDS, build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hook():
    path = ROOT / "docs" / "hooks" / "commands.py"
    spec = importlib.util.spec_from_file_location("docs_commands_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)


def test_command_reference_holds_every_command_option_and_default():
    parser = build_parser()
    text = _hook().command_reference(parser)
    subs = list(_subparsers(parser))
    assert {s.prog.split()[1] for s in subs} == set(COMMANDS)
    assert len(subs) > len(COMMANDS)  # convert's formats are commands of their own
    for sub in subs:
        section = text.split(f"## {sub.prog}\n", 1)[1]
        section = re.split(r"\n#{2,} minicnn ", section, maxsplit=1)[0]
        for action in sub._actions:
            skipped = isinstance(action, (argparse._SubParsersAction, argparse._HelpAction))
            if skipped or action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                assert f"`{option}" in section, (sub.prog, option)
            default = action.default
            plain = isinstance(default, (int, float, str)) and not isinstance(default, bool)
            if action.option_strings and plain and default != argparse.SUPPRESS:
                assert f"`{default}`" in section, (sub.prog, action.dest, default)
    # a default the help quotes with %(default)s is filled in, as --help prints it
    assert "%(default)" not in text


def test_hook_replaces_only_its_marker():
    hook = _hook()
    assert hook.on_page_markdown("no marker here", None, None, None) == "no marker here"
    page = hook.on_page_markdown(f"# Commands\n\n{hook.MARKER}\n", None, None, None)
    assert page.startswith("# Commands\n") and "## minicnn demo" in page and hook.MARKER not in page


def test_readme_is_a_short_front_page_with_the_two_commands():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) < 150
    assert "    python3 -m venv .venv && . .venv/bin/activate && pip install -e . && minicnn demo" in readme
    test = ('    python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'
            " && python -m pytest -q")
    assert test in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", "\n".join(readme)):
        assert (ROOT / link).is_file(), link


def test_every_page_in_the_nav_exists():
    nav = re.findall(r":\s+([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert "reference/commands.md" in nav and "method.md" in nav
    for page in nav:
        assert (ROOT / "docs" / page).is_file(), page
