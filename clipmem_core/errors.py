"""Errors that the CLI turns into a one-line message and exit status 2."""


class ClipmemError(Exception):
    """Bad input or an unusable cache: the user can fix it, so no traceback is shown."""
