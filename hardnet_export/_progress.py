"""One progress-bar style for long work: count, rate and ETA, via rich."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from hardnet_export import _signals

T = TypeVar("T")


def plain_console(**options: Any) -> Any:
    """A rich ``Console`` that prints text as given: no markup, no highlighting.

    Every message here may hold user text (a file name, a ``pip install 'x[trt]'`` hint) in
    which rich would take ``[trt]`` for a style tag and drop it; styles are given as
    ``style=`` or ``rich.text.Text`` spans instead. Tables printed on it get the same rule.
    """
    from rich.console import Console

    return Console(markup=False, highlight=False, **options)


def progress_bar(*columns: Any, enabled: bool = True, transient: bool = False) -> Any:
    """A rich ``Progress``: description, bar, done/total, then ``columns``, elapsed and ETA.

    ``columns`` are rich columns or format strings (e.g. ``"loss {task.fields[loss]:.4f}"``);
    with ``enabled=False`` the bar draws nothing.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    extra = [TextColumn(c, markup=False) if isinstance(c, str) else c for c in columns]
    return Progress(
        # Descriptions name artifacts and images: text, never markup.
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=transient,
        console=plain_console(),
    )


def rate_column(unit: str) -> Any:
    """A column showing the task's speed as ``<rate> <unit>/s``."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else f"- {unit}/s")

    return RateColumn()


def average_rate_column(unit: str) -> Any:
    """A column showing done / elapsed as ``<rate> <unit>/s``: for work that finishes in
    bursts (a shard of images at once), where the recent speed jumps about."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class AverageRateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            elapsed = task.elapsed or 0.0
            if not task.completed or elapsed <= 0:
                return Text(f"- {unit}/s")
            return Text(f"{task.completed / elapsed:.2f} {unit}/s")

    return AverageRateColumn()


def track(
    items: Iterable[T], total: int, description: str, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Yield ``items`` while a bar shows done/total, items per second and time left.

    With ``enabled=False`` the items pass through untouched (library default, quiet tests).
    A SIGINT or SIGTERM received under the command line stops the loop at the next item, even
    one whose exception a library swallowed (:func:`hardnet_export._signals.check`).
    """
    if enabled:
        with progress_bar(rate_column(unit)) as progress:
            for item in progress.track(items, total=total, description=description):
                _signals.check()
                yield item
        return
    for item in items:
        _signals.check()
        yield item
