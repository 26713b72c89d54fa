"""The page `sale bench frontier` writes: per split, a table of pass@1 and cost against
always-largest at every price spread, the break-even ratio, and one plot of both."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.evaluation import table
from marketplace.evaluation.frontier import LEAN, METHODS, Point, Sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOT = "frontier.png"


def break_even_text(sweep: Sweep) -> str:
    """Where SALE-lean starts to cost less than always-largest, in words."""
    found = sweep.break_even
    if all(LEAN not in p.rows for p in sweep.points):
        return "SALE-lean was replayed at no ratio of the range (see the notes)"
    if found is None:
        return "SALE-lean costs less than always-largest at no ratio of the range"
    if found == sweep.points[0].ratio:
        return f"SALE-lean costs less than always-largest already at this machine's {found:.2f}"
    return f"SALE-lean starts to cost less than always-largest below r = {found:.2f}"


def replayed_text(sweeps: Sequence[Sweep]) -> str:
    """How often the archive held every draft SALE-lean asked for (nothing is computed here)."""
    points = [p for sweep in sweeps for p in sweep.points]
    lacking = [p for p in points if p.missing]
    return f"SALE-lean was replayed at {len(points) - len(lacking)} of {len(points)} points; " + (
        f"at {len(lacking)} the archive lacks a draft it asks for (the row's note names it)."
        if lacking
        else "the archive holds every draft it asked for."
    )


def _cell(point: Point, method: str) -> str:
    row = point.rows.get(method)
    if row is None:
        return "not replayed"
    ratio = row.paired.cost_ratio
    span = f" [{ratio.low:.2f}, {ratio.high:.2f}]" if method == LEAN else ""
    return f"{row.result.pass_at_1:.1%} · {ratio.estimate:.2f}{span}"


def split_table(sweep: Sweep) -> str:
    """One row per ratio: each method's pass@1 · cost over always-largest's."""
    lines = [
        "| r (M/L draft cost) | price factor | M/L output price | always-L pass@1 | "
        + " | ".join(METHODS)
        + " | note |",
        "|---:|---:|---:|---:|" + "---:|" * len(METHODS) + "---|",
    ]
    for i, p in enumerate(sweep.points):
        notes = ["this machine's prices"] if i == 0 else []
        notes += [f"SALE-lean not replayed: {p.missing}"] if p.missing else []
        cells = " | ".join(_cell(p, m) for m in METHODS)
        lines.append(
            f"| {p.ratio:.3f} | {p.factor:.3f} | {p.output_ratio:.3f} "
            f"| {p.pass_at_1(p.reference):.1%} | {cells} | {'; '.join(notes)} |"
        )
    return "\n".join(lines)


def markdown(sweeps: Sequence[Sweep], command: str) -> str:
    """The page: how it was made, then each split's table and break-even, then the plot."""
    parts = [
        "# The price frontier",
        f"Written by `{command}` from the archived drafts alone (no model call).",
        "Each cell: pass@1 · cost over always-L's (SALE-lean: with its paired bootstrap 95% "
        "interval; 3 task orders). r is always-M's cost over always-L's on the split; at each "
        "r, S's and M's prices (input, cached input, output) are the config's times the price "
        "factor, L's stay the config's; the lean priors are refitted on the training split at "
        "those prices. The break-even ratio is interpolated linearly between sweep points.",
    ]
    parts.append(replayed_text(sweeps))
    for sweep in sweeps:
        parts.append(f"## {sweep.split} ({sweep.tasks} tasks)")
        parts.append(split_table(sweep))
        parts.append(f"{break_even_text(sweep)}.")
    parts.append(f"![cost and pass@1 against the price ratio]({PLOT})")
    return "\n\n".join(parts) + "\n"


def plot(sweeps: Sequence[Sweep], path: Path) -> None:
    """Cost over always-largest's (top) and pass@1 (bottom) against r, log x, one column per
    split; the break-even ratio as a dotted line."""
    plt = table.pyplot()
    fig, axes = plt.subplots(2, len(sweeps), figsize=(6 * len(sweeps), 8), squeeze=False)
    for column, sweep in enumerate(sweeps):
        _draw(axes[0, column], axes[1, column], sweep)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw(cost_ax: Axes, pass_ax: Axes, sweep: Sweep) -> None:
    """One split's column: every method's curve, always-L's line, the break-even ratio."""
    from matplotlib.ticker import NullFormatter

    ratios = [p.ratio for p in sweep.points]
    for method, (colour, marker) in zip(METHODS, table.styles(len(METHODS)), strict=True):
        costs = [p.cost_ratio(method) for p in sweep.points]
        passes = [100 * p.pass_at_1(method) for p in sweep.points]
        style = {"color": colour, "marker": marker, "markersize": 5}
        cost_ax.plot(ratios, costs, label=method, **style)
        pass_ax.plot(ratios, passes, label=method, **style)
    reference = [100 * p.pass_at_1(p.reference) for p in sweep.points]
    cost_ax.axhline(1.0, color="0.35", linestyle="--", linewidth=1, label="always L")
    pass_ax.plot(ratios, reference, color="0.35", linestyle="--", linewidth=1, label="always L")
    found = sweep.break_even
    if found is not None:
        cost_ax.axvline(found, color="0.5", linestyle=":", label="SALE-lean's break-even")
    for ax, label in ((cost_ax, "cost over always-L's"), (pass_ax, "pass@1 (%)")):
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{r:.2g}" for r in ratios], fontsize=7)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("r: M's draft cost over L's (log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    even = "none in the range" if found is None else f"r = {found:.2f}"
    cost_ax.set_title(f"{sweep.split} ({sweep.tasks} tasks); break-even {even}", fontsize=10)


def write(sweeps: Sequence[Sweep], out: Path, command: str) -> str:
    """The page and its plot into `out`; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(sweeps, command)
    (out / "README.md").write_text(text)
    plot(sweeps, out / PLOT)
    return text
