"""Exception types shared by every stage.

The command line catches :class:`AejetsError` and prints its message without a
traceback: the message itself must name the file, branch, dataset or value at fault
and say what to do.
"""

__all__ = [
    "AejetsError",
    "ConfigError",
    "InputError",
    "OutputError",
    "ServingError",
]


class AejetsError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(AejetsError):
    """A configuration value, command-line option or fileset entry is invalid."""


class InputError(AejetsError):
    """An input file, branch, field or column is missing, unreadable or mistyped."""


class OutputError(AejetsError):
    """An output folder or file cannot be written."""


class ServingError(AejetsError):
    """A Triton server cannot be started, reached or queried."""
