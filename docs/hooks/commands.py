"""MkDocs hook: the command reference, generated from minicnn's argparse parsers at build time.

``docs/reference/commands.md`` holds the marker ``<!-- commands -->``; this hook replaces it
with every command of ``minicnn.cli.build_parser()`` (sub-commands such as ``convert coco``
included): its usage, its description and a table of its options with their defaults. The
page is made from the parsers the program runs, so it cannot drift from them.
"""

from __future__ import annotations

import argparse

MARKER = "<!-- commands -->"


def on_page_markdown(markdown, page, config, files, **kwargs):
    if MARKER not in markdown:
        return markdown
    from minicnn.cli import build_parser

    return markdown.replace(MARKER, command_reference(build_parser()))


def command_reference(parser: argparse.ArgumentParser) -> str:
    """Markdown for every sub-command of ``parser`` (recursively), in the parser's order."""
    return "\n".join(_command(name, sub, level=2) for name, sub in _subcommands(parser))


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _command(name, parser, level):
    lines = [f"{'#' * level} {parser.prog}", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += ["```text", _reflow(parser.description.strip()), "```", ""]
    rows = [_row(parser, a) for a in parser._actions if a.help != argparse.SUPPRESS
            and not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]
    if rows:
        lines += ["| argument | default | what it sets |", "|---|---|---|", *rows, ""]
    for sub_name, sub in _subcommands(parser):
        lines.append(_command(sub_name, sub, level + 1))
    return "\n".join(lines)


def _reflow(text):
    """Paragraphs of prose joined into one line each (the page wraps them); a paragraph with
    an indented line (examples, tables) is kept as it is."""
    blocks = text.split("\n\n")
    return "\n\n".join(b if any(line[:1].isspace() for line in b.splitlines()) else " ".join(b.split())
                       for b in blocks)


def _row(parser, action):
    if action.option_strings:
        metavar = "" if action.nargs == 0 else " " + _metavar(action)
        argument = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
    else:
        argument = f"`{_metavar(action)}`"
    return f"| {argument} | {_cell(_default(action))} | {_cell(_help(parser, action))} |"


def _metavar(action):
    if action.metavar is not None:
        m = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        m = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        m = action.dest.upper() if action.option_strings else action.dest
    if action.nargs in ("+", "*"):
        return f"{m} [{m} ...]" if action.nargs == "+" else f"[{m} ...]"
    if isinstance(action.nargs, int) and action.nargs > 1:
        return " ".join([m] * action.nargs)
    return m


def _default(action):
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return ""
    if action.required:
        return "required"
    if action.nargs == 0 and isinstance(action.default, bool):
        return "off" if action.default is False else "on"
    if action.default is None or action.default == argparse.SUPPRESS:
        return "not set"
    if isinstance(action.default, (list, tuple)):
        return "`" + " ".join(map(str, action.default)) + "`"
    return f"`{action.default}`"


def _help(parser, action):
    """The help text with argparse's %(default)s and the like filled in, as --help prints it."""
    if not action.help:
        return ""
    try:
        return parser._get_formatter()._expand_help(action)
    except (TypeError, ValueError, KeyError):
        return action.help


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")
