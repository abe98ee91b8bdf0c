"""User-facing error types: bad input that the CLIs report as one line, without a traceback.

Everything raised as a FastrnnError is the user's to fix (a file, an option, a checkpoint);
any other exception is a bug in fastrnn and keeps its traceback.
"""


class FastrnnError(Exception):
    """Base class: a problem with the user's input, reported as one clear line."""


class CorpusError(FastrnnError, ValueError):
    """The training text is missing, unreadable, not UTF-8, empty or too short."""


class CheckpointError(FastrnnError, ValueError):
    """A checkpoint cannot be read (missing, truncated, corrupt, foreign) or written."""


class ConfigError(FastrnnError, ValueError):
    """An option value is invalid, or options contradict each other or a checkpoint."""


class DivergedError(FastrnnError):
    """The training loss became nan or inf; training stopped and the last good checkpoint stays."""
