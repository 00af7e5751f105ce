"""One progress-bar style for long loops: count, rate and ETA, via rich."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(
    items: Iterable[T], total: int, description: str, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Yield ``items`` while a rich bar shows done/total, items per second and time left.

    With ``enabled=False`` the items pass through untouched (library default, quiet tests).
    """
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else f"- {unit}/s")

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ) as progress:
        yield from progress.track(items, total=total, description=description)
