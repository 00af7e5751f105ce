"""SIGINT and SIGTERM end a command as an exception, and a signal is never lost.

The command line (:func:`hardnet_export.cli.main`) owns the process, so it installs these
handlers (:func:`handled`); library users keep their own. Three things can make a raised
signal disappear, and each is closed here:

- The exception lands in a finaliser (``__del__``, a weakref callback), where Python prints
  "Exception ignored" and carries on. Every signal is recorded before it raises; a swallowed
  one is raised again just after (:func:`_rearm`), long loops ask :func:`check` at every
  step (``_progress.track``), and whatever happens, the
  recorded signal is what the process exits with, and :func:`check` refuses to finish an
  artifact after it (``_io.atomic_path`` asks it right before the rename).
- A third-party library installs a C-level handler over ours on import (``pycolmap``'s glog
  failure handler takes SIGTERM, prints a stack dump and kills the process without cleanup,
  while ``signal.getsignal`` still names ours). After every import that loaded new modules our
  handlers are installed again (:func:`reclaim`).
- The signal lands between "check" and "rename". :func:`deferred` holds a signal back over
  such a section: it is recorded, and raised when the section ends.
"""

from __future__ import annotations

import _thread
import builtins
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from hardnet_export.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: list[int] = []  # every signal this process handled, in order
_defer = [0]  # depth of deferred() sections
_installed: dict[int, Any] = {}  # signum -> the handler it replaced


def received() -> int | None:
    """The first SIGINT/SIGTERM the installed handlers saw, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise :class:`Interrupted` if a signal was received, caught or not: called before an
    artifact is put in place, so that a stop asked for earlier never ends in a finished file."""
    signum = received()
    if signum is not None:
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals back over a short section that must not be cut in two (a check and its
    rename, a cleanup); one that arrived meanwhile is raised when the section ends."""
    _defer[0] += 1
    try:
        yield
    finally:
        _defer[0] -= 1
    if not _defer[0] and _installed:
        check()


def _handle(signum: int, frame: FrameType | None) -> None:
    if signum not in _received:
        _received.append(signum)
    if _defer[0]:
        return
    raise Interrupted(signum)


def _rearm(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, Interrupted) and _installed:
        # Deliver it again once this hook has returned: simulated here and now, the handler
        # would run (and be swallowed) inside the hook itself. From another thread the
        # simulated signal lands at a bytecode boundary of the main thread after the
        # finaliser; should it land in a finaliser again, this runs again.
        with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown
            threading.Timer(0.01, _thread.interrupt_main, (unraisable.exc_value.signum,)).start()
        return
    _previous_hook[0](unraisable)


_previous_hook: list[Callable[[Any], Any]] = [sys.unraisablehook]


def reclaim() -> None:
    """Give the Python handlers of SIGINT and SIGTERM back their signals at the C level (a
    no-op where ours are not installed, and outside the main thread): a library may have
    taken them there on import. Whatever Python handler is current stays the one that runs
    (the trainer's own, while it trains)."""
    if not _installed or threading.current_thread() is not threading.main_thread():
        return
    for signum in _installed:
        current = signal.getsignal(signum)
        if callable(current):
            signal.signal(signum, current)


def _reclaiming_import(original: Callable[..., Any]) -> Callable[..., Any]:
    def importing(*args: Any, **kwargs: Any) -> Any:
        before = len(sys.modules)
        try:
            return original(*args, **kwargs)
        finally:
            if len(sys.modules) != before:  # something new ran its module code
                reclaim()

    importing.__wrapped__ = original  # type: ignore[attr-defined]
    return importing


@contextlib.contextmanager
def handled() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise :class:`Interrupted` while this lasts (main thread only, and
    only where the handler is still Python's default: a test runner or an embedding
    application keeps its own). Restores everything it changed when it ends.

    Yields a list that holds, once this has ended, every signal received up to its very end:
    one that lands while the handlers are being restored (or in a finaliser just before) is
    recorded there instead of being lost, so the caller can still make it the exit status.
    """
    seen: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if main:
        for signum in SIGNALS:
            if signal.getsignal(signum) is defaults[signum]:
                _installed[signum] = signal.signal(signum, _handle)
    if not _installed:
        yield seen
        return
    _previous_hook[0] = sys.unraisablehook
    sys.unraisablehook = _rearm
    original_import = builtins.__import__
    builtins.__import__ = _reclaiming_import(original_import)
    try:
        yield seen
    finally:
        _defer[0] += 1  # from here a signal is recorded, not raised: the restore must finish
        try:
            builtins.__import__ = original_import
            sys.unraisablehook = _previous_hook[0]
            for signum, previous in _installed.items():
                # signal.signal runs the handler of a signal still pending first: ours, which
                # records it.
                signal.signal(signum, previous)
        finally:
            seen.extend(_received)
            _installed.clear()
            _received.clear()
            _defer[0] -= 1
