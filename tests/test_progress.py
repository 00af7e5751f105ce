from __future__ import annotations

import io

import pytest
from rich.console import Console

from hardnet_export._progress import track


def test_disabled_passes_items_through() -> None:
    assert list(track(iter("abc"), 3, "x", enabled=False)) == ["a", "b", "c"]


def test_enabled_yields_all_items_and_shows_count_rate_and_eta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rich.progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    real = rich.progress.Progress
    # The bar's own console is replaced by one writing to the buffer.
    with_buffer = lambda *c, **k: real(*c, **{**k, "console": console})  # noqa: E731
    monkeypatch.setattr(rich.progress, "Progress", with_buffer)
    assert list(track(range(5), 5, "reading tiles", "tiles")) == list(range(5))
    text = out.getvalue()
    assert "reading tiles" in text and "5/5" in text and "tiles/s" in text and "ETA" in text
