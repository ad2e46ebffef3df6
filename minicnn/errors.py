"""The error a user can fix: bad input files, settings or data.

Raised with one message that names the file, layer or setting; the CLI prints it and exits
with code 2, without a traceback. It is a ValueError, so library callers may catch either.
"""


class InputError(ValueError):
    pass


class JobInputError(InputError):
    """An :class:`InputError` that every rank of an MPI job raises at the same point (the
    ranks disagree on their settings): the job ends without ``MPI_Abort``, each rank
    exiting with code 2 and rank 0 alone printing the message, so that nothing of it is
    lost to a launcher killing the processes."""


def shown(text, limit=60, quote=True) -> str:
    """``text`` read from an outside file, for a message: every character that is not
    printable escaped as Python writes it (``\\x00``), so that no raw bytes reach a terminal,
    cut after ``limit`` characters, in quotes unless ``quote`` is false."""
    text = str(text)
    body = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    body += "..." if len(text) > limit else ""
    return f"'{body}'" if quote else body
