"""The library's error types: one base class, and the input errors the CLI maps to exit code 2."""


class SparseCircuitsError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(SparseCircuitsError, ValueError):
    """Bad user input (a path, a config, a file's content): the message names the input and the fix."""


class CheckpointError(InputError):
    """A checkpoint folder that is missing, corrupt, or does not match its config."""
