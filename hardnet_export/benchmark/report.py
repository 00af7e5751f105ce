"""A benchmark result as a terminal table, a Markdown table, a JSON file and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.benchmark.results import (
    FRAME_STAGES,
    PAPER_MS_PER_PATCH,
    BenchmarkResult,
    FrameBenchmarkResult,
    TargetResult,
    Versus,
)

if TYPE_CHECKING:
    from rich.table import Table

COLUMNS = (
    "target",
    "batch",
    "p50 ms",
    "p99 ms",
    "GPU p50 ms",
    "patches/s",
    "x eager fp32",
    "x best peer",
    f"patches / {PAPER_MS_PER_PATCH:g} ms",
    "run var",
    "FPR95",
    "NN acc",
)
_GPU_COLUMN = COLUMNS.index("GPU p50 ms")


def _has_compute(result: BenchmarkResult) -> bool:
    return any(c.compute is not None for t in result.targets for c in t.cases)


def columns(result: BenchmarkResult) -> list[str]:
    """Column names; the GPU compute column only where some case has a device clock."""
    names = list(COLUMNS)
    if not _has_compute(result):
        del names[_GPU_COLUMN]
    return names


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def rows(result: BenchmarkResult) -> list[list[str]]:
    """The table as strings, one row per target and batch size; accuracy on a target's
    first row only, since it does not depend on the batch size."""
    table: list[list[str]] = []
    against = {(v.ours, v.size): v.ratio for v in result.versus}
    for target in result.targets:
        for i, case in enumerate(target.cases):
            acc = target.accuracy if i == 0 else None
            versus = against.get((target.label, case.batch_size))
            table.append(
                [
                    target.label if i == 0 else "",
                    str(case.batch_size),
                    _fmt(case.latency.p50),
                    _fmt(case.latency.p99),
                    _fmt(case.compute.p50 if case.compute else None),
                    f"{case.throughput:,.0f}",
                    "-" if case.vs_baseline is None else f"{case.vs_baseline:.2f}x",
                    "-" if versus is None else f"{versus:.2f}x",
                    f"{case.patches_per_ms:.2f}",
                    _pct(case.variation) + (" !" if case.unstable else ""),
                    _pct(acc.fpr95) if acc else "",
                    _pct(acc.nn_accuracy) if acc else "",
                ]
            )
    if not _has_compute(result):
        for row in table:
            del row[_GPU_COLUMN]
    return table


def isa_text(cpu: dict[str, Any]) -> str:
    """The CPU's int8 kernel kind and bf16 instruction sets, as a results file names them."""
    bf16 = [f for f in cpu.get("isa", []) if "bf16" in f]
    return f"int8 ISA {cpu.get('int8_isa', '?')}, bf16 {'/'.join(bf16) if bf16 else 'none'}"


def _caption(result: BenchmarkResult) -> str:
    cpu = result.machine["cpu"]
    gpus = ", ".join(g.get("name", "?") for g in result.machine.get("gpus", [])) or "no GPU"
    s = result.settings
    return (
        f"{cpu['model']} ({cpu['usable_cpus']} CPUs; {isa_text(cpu)}), {gpus}; "
        f"device {s['device']}, "
        f"{s['threads']} threads; warm-up {s['warmup_s']} s, >= {s['duration_s']} s and "
        f">= {s['min_iterations']} iterations per case; inputs: {result.inputs}"
    )


def to_table(result: BenchmarkResult) -> Table:
    """A rich table for the terminal."""
    from rich.table import Table

    table = Table(title="hardnet-export bench", caption=_caption(result))
    for name in columns(result):
        table.add_column(name, justify="left" if name == "target" else "right")
    all_rows = rows(result)
    last_rows = set(_last_rows(result))
    for i, row in enumerate(all_rows):
        table.add_row(*row, end_section=i in last_rows)
    return table


def _last_rows(result: BenchmarkResult) -> list[int]:
    ends, count = [], 0
    for target in result.targets:
        count += len(target.cases)
        ends.append(count - 1)
    return ends


VERSUS_COLUMNS = ("size", "ours", "ours ms", "best peer", "peer ms", "ours x best peer", "goal")


def _size(v: Versus) -> str:
    return f"batch {v.size}" if v.unit == "patches" else f"{v.size} keypoints"


def _goal(v: Versus) -> str:
    if v.goal is None:
        return "-"
    what = f"<= {v.goal:g}x SIFT" if v.unit == "keypoints" else f">= {v.goal:g}x"
    return f"{what}: {'met' if v.meets_goal else 'NOT met'}"


def versus_rows(versus: list[Versus]) -> list[list[str]]:
    """Ours against the best peer, one row per size and target of ours; per frame the
    ratio cell also gives ours over SIFT."""
    table = []
    for v in versus:
        ratio = f"{v.ratio:.2f}x"
        if v.vs_sift is not None:
            ratio += f" ({v.vs_sift:.2f}x SIFT)"
        table.append(
            [_size(v), v.ours, _fmt(v.ours_ms), v.best_peer, _fmt(v.peers_ms[v.best_peer]),
             ratio, _goal(v)]
        )  # fmt: skip
    return table


def versus_summary(versus: list[Versus]) -> list[str]:
    """One sentence per size: the best of ours against the best peer there."""
    lines = []
    for size in dict.fromkeys((v.unit, v.size) for v in versus):
        here = [v for v in versus if (v.unit, v.size) == size]
        best = max(here, key=lambda v: v.ratio)
        sift = "" if best.vs_sift is None else f", {best.vs_sift:.2f}x SIFT compute()"
        lines.append(
            f"{_size(best)}: {best.ours} is {best.ratio:.2f}x the best peer "
            f"({best.best_peer}, {_fmt(best.peers_ms[best.best_peer])} ms vs "
            f"{_fmt(best.ours_ms)} ms, median of {best.rounds} interleaved rounds){sift}; "
            f"goal {_goal(best)}"
        )
    return lines


def versus_table(versus: list[Versus], title: str = "ours against the peers") -> Table:
    """The interleaved head-to-head for the terminal."""
    from rich.table import Table

    table = Table(title=title)
    for name in VERSUS_COLUMNS:
        table.add_column(name, justify="left" if name in ("ours", "best peer") else "right")
    for row in versus_rows(versus):
        table.add_row(*row)
    return table


def _versus_markdown(versus: list[Versus], targets: list[Any]) -> list[str]:
    """The head-to-head and what ours and each peer ran, in Markdown (empty without it)."""
    if not versus:
        return []
    lines = [
        "",
        "## Ours against the peers",
        "",
        "Ours: `runtime.load(artifact, device='cpu')`, no backend and no options. Peers: what "
        "a user builds alone. Each row: median over interleaved rounds (every contender runs "
        "about as long per round, order rotating) of the best peer's time per call over "
        "ours in the same round (batch 1: latency; batch 256: throughput).",
        "",
        "| " + " | ".join(VERSUS_COLUMNS) + " |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in versus_rows(versus)]
    lines += [""] + [f"- {line}" for line in versus_summary(versus)]
    noted = [t for t in targets if getattr(t, "note", "")]
    if noted:
        lines += ["", "What ran:", ""] + [f"- {t.label}: {t.note}" for t in noted]
    return lines


def target_notes(targets: list[TargetResult]) -> list[str]:
    """``label: note`` for every target that has a note (ours, the peers)."""
    return [f"{t.label}: {t.note}" for t in targets if t.note]


def to_markdown(result: BenchmarkResult) -> str:
    """The same table in Markdown, with the machine and settings above it."""
    lines = [
        "# hardnet-export bench",
        "",
        f"- command: `{result.command}`",
        f"- created: {result.created}",
        f"- machine: {_caption(result)}",
        "- libraries: "
        + ", ".join(f"{k} {v}" for k, v in result.machine["libraries"].items() if v),
        "- latency is end to end per call (host uint8 patches in, host descriptors out), "
        "trtexec percentiles; `GPU p50` is CUDA-event device time; `run var` is the spread of "
        "the medians of 5 consecutive slices of the timed window over the overall median "
        "(`!` above 2.5 %)",
        "",
        "| " + " | ".join(columns(result)) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns(result)))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    lines += _versus_markdown(result.versus, result.targets)
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def write_json(result: BenchmarkResult | FrameBenchmarkResult, path: str | Path) -> Path:
    """Either result as JSON (its ``format`` field says which)."""
    path = Path(path)
    atomic_write_text(path, result.to_json())
    return path


def write_markdown(result: BenchmarkResult | FrameBenchmarkResult, path: str | Path) -> Path:
    path = Path(path)
    if isinstance(result, FrameBenchmarkResult):
        atomic_write_text(path, frame_markdown(result))
    else:
        atomic_write_text(path, to_markdown(result))
    return path


def versus_panel(ax: Any, versus: list[Versus]) -> None:
    """Bars of ours over the best peer, per size and target of ours, with each size's goal
    as a dashed line and the best peer named on its bar."""
    sizes = list(dict.fromkeys((v.unit, v.size) for v in versus))
    ours = list(dict.fromkeys(v.ours for v in versus))
    width = 0.8 / max(1, len(ours))
    for j, label in enumerate(ours):
        for i, size in enumerate(sizes):
            v = next((v for v in versus if v.ours == label and (v.unit, v.size) == size), None)
            if v is None:
                continue
            x = i + (j - (len(ours) - 1) / 2) * width
            ax.bar(x, v.ratio, width * 0.9, color=f"C{j}", label=label if i == 0 else None)
            sift = "" if v.vs_sift is None else f"\n{v.vs_sift:.2f}x SIFT"
            ax.annotate(f"{v.ratio:.2f}x{sift}", (x, v.ratio), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize="small")  # fmt: skip
            # The best peer inside its bar, upright: the labels are too long to lie side by side.
            peer = v.best_peer.removeprefix("peer: ").split(" (")[0]
            ax.text(x, v.ratio / 2, f"vs {peer}", rotation=90, ha="center", va="center",
                    fontsize="x-small", color="white")  # fmt: skip
            if v.goal is not None and v.unit == "patches":
                ax.hlines(v.goal, x - width / 2, x + width / 2, colors="black", linestyles="--")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(sizes)), [_size(next(v for v in versus if (v.unit, v.size) == s))
                                      for s in sizes])  # fmt: skip
    top = max(max(v.ratio for v in versus), max((v.goal or 0) for v in versus))
    ax.set_ylim(0, top * 1.35)
    ax.set_ylabel("ours x best peer (above 1: ours faster)")
    per_frame = all(v.unit == "keypoints" for v in versus)
    goal = "dashed: goal"
    if per_frame:
        goal = "x SIFT under each ratio" + (
            f"; goal <= {versus[0].goal:g}x SIFT" if versus[0].goal is not None else ""
        )
    ax.set_title(f"ours against the best peer ({goal})", fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left")


def write_plot(result: BenchmarkResult, path: str | Path) -> Path:
    """Throughput and p50 latency against batch size, one line per target (log axes), and
    ours against the best peer where the run timed them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    path = Path(path)
    panels = 3 if result.versus else 2
    figure = Figure(figsize=(6 * panels, 6), layout="constrained")
    axes = figure.subplots(1, panels)
    ax_thr, ax_lat = axes[0], axes[1]
    for i, target in enumerate(result.targets):
        sizes = [c.batch_size for c in target.cases]
        # Ours solid and thick, peers dashed, other rows thin: ten colours repeat otherwise.
        style = {"ours": "-", "peer": "--"}.get(target.role, ":")
        width = 2.5 if target.role == "ours" else 1.2
        marker = "os^vD<>ph*"[i % 10]
        for ax, values in (
            (ax_thr, [c.throughput for c in target.cases]),
            (ax_lat, [c.latency.p50 for c in target.cases]),
        ):
            ax.plot(sizes, values, marker=marker, linestyle=style, linewidth=width,
                    label=target.label)  # fmt: skip
    for ax, ylabel in ((ax_thr, "throughput (patches/s)"), (ax_lat, "p50 latency per call (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_thr.legend(fontsize="x-small")
    if result.versus:
        versus_panel(axes[2], result.versus)
    figure.suptitle(_caption(result), fontsize="small", wrap=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


# --- Per-image results (hardnet-export bench --image) ---------------------------------------

FRAME_COLUMNS = (
    "target",
    "keypoints",
    "detect p50 ms",
    "extract p50 ms",
    "extract p99 ms",
    "infer p50 ms",
    "infer p99 ms",
    "total p50 ms",
    "total p99 ms",
    "x SIFT",
)


def frame_rows(result: FrameBenchmarkResult) -> list[list[str]]:
    """Per keypoint count: the OpenCV SIFT ``compute()`` reference row, then one row per
    target; detection (the same for all) is its own column, outside the total."""
    table: list[list[str]] = []
    for ref in result.references:
        detect = _fmt(ref.detect.p50)
        table.append(
            ["opencv sift compute() (reference)", str(ref.keypoints), detect]
            + ["-"] * 4
            + [_fmt(ref.sift.p50), _fmt(ref.sift.p99), "1.00x"]
        )
        for target in result.targets:
            case = next(c for c in target.cases if c.requested == ref.requested)
            cells = [target.label, str(case.keypoints), detect]
            for stage in FRAME_STAGES:
                summary = case.stages.get(stage)
                # An image graph extracts and infers in its one call: only a total.
                cells += [_fmt(summary.p50), _fmt(summary.p99)] if summary else ["in graph"] * 2
            table.append(cells + [f"{case.vs_sift:.2f}x"])
    return table


def _frame_caption(result: FrameBenchmarkResult) -> str:
    cpu = result.machine["cpu"]
    s = result.settings
    height, width = result.image_shape[:2]
    return (
        f"{cpu['model']} ({cpu['usable_cpus']} CPUs; {isa_text(cpu)}); "
        f"{result.image or 'image'} {width}x{height}; device {s.get('device', 'cpu')}, "
        f"{s.get('threads', '-')} threads, OpenCV {s['opencv_threads']} threads; warm-up "
        f"{s['warmup_s']} s, >= {s['duration_s']} s and >= {s['min_iterations']} iterations "
        "per stage"
    )


def frame_table(result: FrameBenchmarkResult) -> Table:
    """The per-image table for the terminal."""
    from rich.table import Table

    table = Table(title="hardnet-export bench --image", caption=_frame_caption(result))
    for name in FRAME_COLUMNS:
        table.add_column(name, justify="left" if name == "target" else "right")
    per_count = len(result.targets) + 1
    for i, row in enumerate(frame_rows(result)):
        table.add_row(*row, end_section=i % per_count == per_count - 1)
    return table


def frame_markdown(result: FrameBenchmarkResult) -> str:
    """The per-image table in Markdown, with the machine and settings above it."""
    lines = [
        "# hardnet-export bench --image",
        "",
        f"- command: `{result.command}`",
        f"- created: {result.created}",
        f"- machine: {_frame_caption(result)}",
        "- per frame: detection (SIFT, listed apart: both descriptors need keypoints), "
        "extraction (patches cut), inference (describe of those patches), total "
        "(Describer.compute: extraction and inference); `x SIFT` is total p50 over OpenCV SIFT "
        "compute() p50 on the same keypoints in the same run",
        "",
        "| " + " | ".join(FRAME_COLUMNS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(FRAME_COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in frame_rows(result)]
    lines += _versus_markdown(result.versus, result.targets)
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def write_frame_plot(result: FrameBenchmarkResult, path: str | Path) -> Path:
    """Total p50 per frame against keypoint count, one line per target and OpenCV SIFT
    ``compute()`` as the reference (log axes; bars reach p99)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    path = Path(path)
    panels = 2 if result.versus else 1
    figure = Figure(figsize=(8 * panels, 6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]

    def line(
        label: str, counts: list[int], p50: list[float], p99: list[float], **style: str
    ) -> None:
        errors = [[0.0] * len(p50), [b - a for a, b in zip(p50, p99, strict=True)]]
        ax.errorbar(counts, p50, yerr=errors, marker="o", capsize=3, label=label, **style)

    refs = result.references
    line(
        "opencv sift compute() (reference)",
        [r.keypoints for r in refs],
        [r.sift.p50 for r in refs],
        [r.sift.p99 for r in refs],
        color="black",
        linestyle="--",
    )
    for target in result.targets:
        cases = target.cases
        line(
            f"{target.label}: total",
            [c.keypoints for c in cases],
            [c.stages["total"].p50 for c in cases],
            [c.stages["total"].p99 for c in cases],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("keypoints per frame")
    ax.set_ylabel("time per frame, p50 (bar to p99), ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    if result.versus:
        versus_panel(axes[1], result.versus)
    figure.suptitle(_frame_caption(result), fontsize="small", wrap=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path
