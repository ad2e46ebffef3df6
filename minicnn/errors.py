"""The error a user can fix: bad input files, settings or data.

Raised with one message that names the file, layer or setting; the CLI prints it and exits
with code 2, without a traceback. It is a ValueError, so library callers may catch either.
"""


class InputError(ValueError):
    pass
