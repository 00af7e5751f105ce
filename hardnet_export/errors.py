"""The project's own error types: what a user can cause, and the CLI prints as one sentence.

Each also derives from the built-in exception a caller would expect (``InputError`` is a
``ValueError``, ...), so ``except ValueError`` keeps working. Anything else that escapes is a
bug: the CLI says "internal error" and shows the traceback under ``--debug``.
"""

from __future__ import annotations

import signal


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


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ...; ``signal N`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A command stopped on SIGINT or SIGTERM (``signum``); the CLI exits ``128 + signum``.

    A ``KeyboardInterrupt`` rather than a :class:`HardnetError`, so ``except Exception``
    cannot swallow it and the cleanup code written for Ctrl-C runs for SIGTERM as well.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        verb = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        return f"{verb} by {signal_name(self.signum)}"


class TrainingInterrupted(Interrupted):
    """Training stopped on SIGINT or SIGTERM (``signum``).

    A ``KeyboardInterrupt`` rather than a :class:`HardnetError`: a stop asked for by the user
    must not be swallowed by ``except Exception``. After the first signal the trainer
    finishes the step, writes ``checkpoint`` (``aborted`` False) and raises this; a second
    signal raises it at once (``aborted`` True) and writes nothing, so ``checkpoint`` is the
    last periodic one (``checkpoint_step``), or None. The CLI exits ``128 + signum``.
    """

    def __init__(
        self,
        signum: int,
        *,
        aborted: bool = False,
        step: int | None = None,
        steps: int | None = None,
        checkpoint: str | None = None,
        checkpoint_step: int | None = None,
    ) -> None:
        super().__init__(signum)
        self.aborted = aborted
        self.step = step
        self.steps = steps
        self.checkpoint = checkpoint
        self.checkpoint_step = checkpoint_step

    def __str__(self) -> str:
        name = signal_name(self.signum)
        where = "" if self.step is None else f" at step {self.step}"
        if self.steps is not None and self.step is not None:
            where += f" of {self.steps}"
        if not self.aborted:
            return f"interrupted by {name}{where}: wrote {self.checkpoint}; --resume continues"
        if self.checkpoint is None:
            return (
                f"aborted by a second {name}{where} without writing a checkpoint; the run "
                f"has none, so start it again with --overwrite"
            )
        at = "" if self.checkpoint_step is None else f" (step {self.checkpoint_step})"
        return (
            f"aborted by a second {name}{where} without writing a checkpoint; "
            f"{self.checkpoint}{at} stays and --resume continues from there"
        )
