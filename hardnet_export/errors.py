"""The project's own error types: what a user can cause, and the CLI prints as one sentence.

Each also derives from the built-in exception a caller would expect (``InputError`` is a
``ValueError``, ...), so ``except ValueError`` keeps working. Anything else that escapes is a
bug: the CLI says "internal error" and shows the traceback under ``--debug``.
"""

from __future__ import annotations


class HardnetError(Exception):
    """Base class of every error the project raises on purpose, with a message for users."""


class InputError(HardnetError, ValueError):
    """A value (argument, option, array, file content) is not what it must be."""


class InputTypeError(HardnetError, TypeError):
    """A value has the wrong type (a float image where uint8 is needed, ...)."""


class MissingFileError(HardnetError, FileNotFoundError):
    """A file or folder the operation needs does not exist."""


class OutputError(HardnetError, OSError):
    """An output cannot be written there (a folder, a read-only or missing place, ...)."""


class OutputIsFolderError(OutputError, IsADirectoryError):
    """An output file name that names an existing folder."""


class MissingDependencyError(HardnetError, RuntimeError):
    """A library or device the requested operation needs is not available."""


class DeviceError(HardnetError, RuntimeError):
    """A GPU, its driver or an accelerator library (CUDA, TensorRT) failed an operation."""


class StateError(HardnetError, RuntimeError):
    """An object was used in a state that does not allow it (a closed describer, ...)."""
