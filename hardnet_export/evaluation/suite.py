"""``hardnet-export eval``: a model and OpenCV SIFT on the same patches, one table per dataset.

Data specs (the grammar of :mod:`hardnet_export.data.sources`; evaluation takes these kinds):
    - ``builtin``: validation pairs from the held-out built-in photos.
    - ``stereo``: the motorcycle stereo pair; ``stereo-hard`` adds rotation and zoom jitter.
    - ``phototour:ROOT/NAME[:PAIRS_FILE]`` (or the folder): FPR95 on a PhotoTour pair list.
    - ``hpatches:ROOT[:SPLIT]`` (or the folder): HPatches verification and matching mAP
      (default split ``a``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export._io import atomic_write_text
from hardnet_export.artifacts.describe import DescribeFn
from hardnet_export.data.sources import parse_source, split_specs
from hardnet_export.errors import InputError
from hardnet_export.evaluation.describers import as_describer
from hardnet_export.evaluation.sift import SIFT_SIZE, sift_describer
from hardnet_export.validate import check_float, check_int

# Metric -> (label, lower is better); values are fractions, shown as percentages.
METRICS: dict[str, tuple[str, bool]] = {
    "fpr95": ("FPR95 %", True),
    "nn_accuracy": ("NN accuracy %", False),
    "verification_map": ("verification mAP %", False),
    "matching_map": ("matching mAP %", False),
    "matching_map_e": ("matching mAP easy %", False),
    "matching_map_h": ("matching mAP hard %", False),
    "matching_map_t": ("matching mAP tough %", False),
}


@dataclass
class EvalTable:
    """Results of every describer on one dataset: ``results[describer][metric]``."""

    dataset: str
    detail: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)

    def metrics(self) -> list[str]:
        first = next(iter(self.results.values()), {})
        return [m for m in METRICS if m in first]


@dataclass(frozen=True)
class _Dataset:
    name: str
    detail: str
    run: Callable[[DescribeFn, Any], dict[str, float]]


#: The kinds of :mod:`hardnet_export.data.sources` evaluation takes.
EVALUATION_KINDS = ("builtin", "stereo", "stereo-hard", "phototour", "hpatches")
#: The most pairs cut from one built-in or stereo set.
MAX_PAIRS = 1_000_000


def _parse(spec: str, n_pairs: int, seed: int) -> _Dataset:
    from hardnet_export.evaluation.pairs import evaluate_matched_pairs

    source = parse_source(spec, allowed=EVALUATION_KINDS, purpose="evaluation data")
    if source.kind == "builtin":
        if source.options:
            raise InputError(
                f"evaluation data {spec!r}: builtin takes no options here (the held-out photos "
                "are evaluated as they are)"
            )
        from hardnet_export.data.builtin import validation_pairs

        pairs = functools.cache(lambda: validation_pairs(n_pairs, seed=seed))
        detail = f"{n_pairs} pairs from held-out photos, seed {seed}"
        return _Dataset(
            source.spec, detail, lambda d, p: evaluate_matched_pairs(d, pairs(), progress=p)
        )
    if source.kind in ("stereo", "stereo-hard"):
        from hardnet_export.data.stereo import HARD_JITTER, stereo_pairs

        jitter = HARD_JITTER if source.kind == "stereo-hard" else None
        pairs = functools.cache(lambda: stereo_pairs(n_pairs, seed=seed, jitter=jitter))
        detail = f"motorcycle, {n_pairs} pairs, seed {seed}" + (
            f", jitter {jitter[0]:g} deg / {jitter[1]:g}x" if jitter else ""
        )
        return _Dataset(
            source.spec, detail, lambda d, p: evaluate_matched_pairs(d, pairs(), progress=p)
        )
    if source.kind == "phototour":
        from hardnet_export.data.phototour import STANDARD_MATCHES
        from hardnet_export.evaluation.phototour import evaluate_phototour

        pairs_file = source.pairs_file or STANDARD_MATCHES
        return _Dataset(
            source.spec,
            f"{source.name}, {pairs_file}",
            lambda d, p: evaluate_phototour(d, source.root, source.name, pairs_file, p),
        )
    from hardnet_export.evaluation.hpatches import evaluate_hpatches

    assert source.path is not None and source.split is not None
    root, split = source.path, source.split
    return _Dataset(
        source.spec,
        f"split {split} (test sequences)",
        lambda d, p: evaluate_hpatches(d, root, split, progress=p),
    )


def run_evaluation(
    model: str | Path | DescribeFn,
    data: Sequence[str] = ("builtin", "stereo"),
    *,
    sift: bool = True,
    rootsift: bool = False,
    sift_size: float = SIFT_SIZE,
    n_pairs: int = 2000,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> list[EvalTable]:
    """Evaluate ``model`` and OpenCV SIFT (unless ``sift=False``; RootSIFT if asked) on every
    dataset; the model's results come first in every table."""
    from hardnet_export._progress import progress_bar, rate_column

    specs = split_specs(data)
    if not specs:
        raise InputError(
            "no evaluation data given: expected builtin, stereo, stereo-hard, "
            "phototour:ROOT/NAME[:PAIRS.txt] or hpatches:ROOT[:SPLIT]"
        )
    check_int("n_pairs", n_pairs, low=2, high=MAX_PAIRS)
    check_int("seed", seed, low=0, high=2**63 - 1)
    check_float("sift_size", sift_size, low=0.0, low_open=True, high=1000.0)
    # Cheap checks first: a bad spec or a missing model fails before any pairs are cut
    # (pairs are cut on first use).
    datasets = [_parse(s, n_pairs, seed) for s in specs]
    describers = [as_describer(model, device=device)]
    if sift:
        describers.append(("SIFT", sift_describer(sift_size)))
    if rootsift:
        describers.append(("RootSIFT", sift_describer(sift_size, root=True)))
    tables = []
    with progress_bar(rate_column("patches"), enabled=progress) as bar:
        for ds in datasets:
            table = EvalTable(ds.name, ds.detail)
            for name, describe in describers:
                task = bar.add_task(f"{ds.name}: {name}", total=None)
                table.results[name] = ds.run(describe, lambda n, t=task: bar.advance(t, n))
                bar.update(task, total=bar.tasks[task].completed)
            tables.append(table)
    return tables


def render_tables(tables: Sequence[EvalTable]) -> list[Any]:
    """Rich tables, one per dataset: rows are metrics, columns describers, best in bold."""
    from rich.table import Table
    from rich.text import Text

    out = []
    for t in tables:
        table = Table(title=f"{t.dataset} ({t.detail})")
        table.add_column("metric")
        for name in t.results:
            table.add_column(name, justify="right")
        for metric in t.metrics():
            label, lower = METRICS[metric]
            values = [t.results[name][metric] for name in t.results]
            best = min(values) if lower else max(values)
            table.add_row(
                label,
                *[Text(f"{100 * v:.2f}", style="bold" if v == best else "") for v in values],
            )
        out.append(table)
    return out


def tables_to_json(tables: Sequence[EvalTable]) -> dict[str, Any]:
    """A JSON-ready summary (fractions, not percentages)."""
    return {
        "units": "fractions (FPR95 lower is better; accuracy and mAP higher)",
        "datasets": [{"data": t.dataset, "detail": t.detail, "results": t.results} for t in tables],
    }


def write_json(tables: Sequence[EvalTable], path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(tables_to_json(tables), indent=2) + "\n")
    return path
