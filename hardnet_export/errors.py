"""The project's own error types: what a user can cause, and the CLI prints as one sentence.

Each also derives from the built-in exception a caller would expect (``InputError`` is a
``ValueError``, ...), so ``except ValueError`` keeps working. Anything else that escapes is a
bug: the CLI says "internal error" and shows the traceback under ``--debug``.

An error that knows the way out carries it as data, a :class:`Remedy`: the parameters to
change (and the stage to run again, if any). ``str(error)`` renders it as Python (parameter
names, a function call); the CLI renders the same remedy as its flags and commands
(:meth:`HardnetError.render`), so renaming a flag touches the CLI only.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Remedy:
    """What to change, as data.

    Attributes:
        options: parameter -> the value to pass (``True``/``False`` for switches; ``...``
            for "another value", which names the parameter alone).
        stage: the stage to run again (the CLI command ``trt``, the library function
            ``build_engine``), with ``arguments`` (positional, as text); None: call the
            same one again with ``options``.
        function: that stage's library function (``hardnet_export.export.tensorrt.build_engine``).
        arguments: the stage's positional arguments.
        switches: options of the command line only, which choose the function among the
            stage's (``onnx``'s ``with_extraction`` runs ``export_image_graph``).
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    stage: str | None = None
    function: str | None = None
    arguments: tuple[str, ...] = ()
    switches: Mapping[str, Any] = field(default_factory=dict)

    def python(self) -> str:
        """As Python: ``out_of_bounds='zero'``, or ``build_engine('m.onnx', rebuild=True)``."""
        options = ", ".join(k if v is ... else f"{k}={v!r}" for k, v in self.options.items())
        if self.function is None:
            return options
        name = self.function.rpartition(".")[2]
        args = ", ".join([*(repr(a) for a in self.arguments), *([options] if options else [])])
        return f"{name}({args})"

    def render(self, flag: Callable[[str, Any], str]) -> str:
        """As a command line, ``flag(parameter, value)`` spelling each option."""
        flags = " ".join(flag(k, v) for k, v in {**self.switches, **self.options}.items())
        if self.stage is None:
            return flags
        parts = ("hardnet-export", self.stage, *self.arguments, flags)
        return " ".join(part for part in parts if part)


class Placeholder(str):
    """A value the user chooses, written as its name in both forms: ``max_batch=B`` in
    Python, ``--max-batch B`` on the command line."""

    def __repr__(self) -> str:
        return str(self)


def parameters(*names: str) -> dict[str, Remedy]:
    """Remedies that name each parameter alone, keyed by its name: a text holding
    ``{max_image}`` reads ``max_image`` in Python and ``--max-image`` on the command line."""
    return {name: Remedy({name: ...}) for name in names}


class HardnetError(Exception):
    """Base class of every error the project raises on purpose, with a message for users.

    ``text`` may hold ``{remedy}`` where the remedy reads best (without it the remedy follows
    the text after a semicolon), and ``{NAME}`` for each of ``remedies`` (alternatives: "pass
    {resume} to continue, {overwrite} to start afresh").
    """

    def __init__(
        self,
        text: str = "",
        *args: object,
        remedy: Remedy | None = None,
        remedies: Mapping[str, Remedy] | None = None,
    ) -> None:
        self.text = text
        self.remedies: dict[str, Remedy] = dict(remedies or {})
        if remedy is not None:
            self.remedies["remedy"] = remedy
        # args hold the Python rendering, so str(), repr() and pickling need no remedy.
        super().__init__(self.render(), *args)

    @property
    def remedy(self) -> Remedy | None:
        return self.remedies.get("remedy")

    def render(self, flag: Callable[[str, Any], str] | None = None) -> str:
        """The sentence with its remedies as Python (``flag`` None) or as a command line."""
        text = self.text
        for key, remedy in self.remedies.items():
            how = remedy.python() if flag is None else remedy.render(flag)
            placeholder = "{" + key + "}"
            if placeholder in text:
                text = text.replace(placeholder, how)
            elif key == "remedy":
                text = f"{text}; {how}"
        return text

    def prefixed(self, context: str) -> HardnetError:
        """The same error (type and remedies) with ``context`` before its message."""
        error = type(self).__new__(type(self))
        HardnetError.__init__(error, f"{context}{self.text}", remedies=self.remedies)
        return error


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


class OutputExistsError(OutputError, FileExistsError):
    """An output that exists already, and the operation does not replace it unasked."""


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

    def render(self, flag: Callable[[str, Any], str] | None = None) -> str:
        """The sentence, its remedy (resume or overwrite) as Python or, with ``flag``, as
        the CLI's flags (:meth:`HardnetError.render`)."""

        def how(**options: Any) -> str:
            remedy = Remedy(options)
            return remedy.python() if flag is None else remedy.render(flag)

        name = signal_name(self.signum)
        where = "" if self.step is None else f" at step {self.step}"
        if self.steps is not None and self.step is not None:
            where += f" of {self.steps}"
        if not self.aborted:
            wrote = f"wrote {self.checkpoint}"
            return f"interrupted by {name}{where}: {wrote}; {how(resume=True)} continues"
        if self.checkpoint is None:
            return (
                f"aborted by a second {name}{where} without writing a checkpoint; the run "
                f"has none, so start it again with {how(overwrite=True)}"
            )
        at = "" if self.checkpoint_step is None else f" (step {self.checkpoint_step})"
        return (
            f"aborted by a second {name}{where} without writing a checkpoint; "
            f"{self.checkpoint}{at} stays and {how(resume=True)} continues from there"
        )

    def __str__(self) -> str:
        return self.render()
