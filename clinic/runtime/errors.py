"""Errors that the runtime reports as one line telling the operator what to fix."""


class RuntimeConfigError(Exception):
    """A configuration or environment problem the operator must fix (not a bug).

    ``manage.py`` and ``dev.py`` print its message as one line instead of a traceback.
    """
