"""The benchmark's plots read at a glance: every method named in a legend beside the plot, no
label printed over another, a colour and marker of its own per method, and always-largest's
pass@1 and cost drawn as reference lines."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.text import Text

from marketplace.evaluation import baselines, table
from schemas.events import Weights
from tests.matrices import PRICES, build


@pytest.fixture
def crowded() -> list[table.Row]:
    """Sixteen methods, most of them within a hair of one another (as the real ones are)."""
    train = build({"a": "SML", "b": "ML"})
    test = build({"c": "SML", "d": "L", "e": ""})
    vectors = baselines.embeddings_for([train, test], lambda texts: np.eye(len(texts)))
    rows = table.rows(table.matrix_methods(train, test, Weights(), PRICES, vectors), PRICES, "L")
    base = next(r for r in rows if r.result.method == "random")
    extra = [
        replace(
            base, result=replace(base.result, method=f"a long method name {i}", cost=5 + i / 50)
        )
        for i in range(16 - len(rows))
    ]
    return rows + extra


def texts(figure) -> list[Text]:
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_no_label_covers_another_and_the_legend_covers_no_point(crowded) -> None:
    figure = table.cost_vs_pass_figure(crowded, "L")
    figure.canvas.draw()  # lays the legend out
    renderer = figure.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(figure)]
    overlapping = [(a, b) for (a, box), (b, other) in combinations(boxes, 2) if box.overlaps(other)]
    assert not overlapping
    [axes] = figure.axes
    legend = axes.get_legend()
    assert not legend.get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))
    plt.close(figure)


def test_every_method_has_a_legend_entry_of_its_own_colour_and_marker(crowded) -> None:
    figure = table.cost_vs_pass_figure(crowded, "L")
    [axes] = figure.axes
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    for row in crowded:
        assert any(entry.startswith(f"{row.result.method} (") for entry in legend), row
    points = [bars.lines[0] for bars in axes.containers]  # each method's errorbar: its point
    looks = {(to_rgba(p.get_color()), p.get_marker()) for p in points}
    assert len(looks) == len(crowded)
    assert len({colour for colour, _ in looks}) == len(crowded)  # the colours alone differ
    plt.close(figure)


def test_always_largest_is_drawn_as_reference_lines(crowded) -> None:
    largest = next(r.result for r in crowded if r.result.method == "always L")
    figure = table.cost_vs_pass_figure(crowded, "L")
    [axes] = figure.axes
    dashed = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    ys = {tuple(line.get_ydata()) for line in dashed}
    xs = {tuple(line.get_xdata()) for line in dashed}
    assert (100 * largest.pass_at_1, 100 * largest.pass_at_1) in ys
    assert (largest.cost, largest.cost) in xs
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "always L: pass@1 and cost" in legend
    plt.close(figure)


def test_the_plots_are_written(crowded, tmp_path: Path) -> None:
    table.plot_cost_vs_pass(crowded, tmp_path / "cost_vs_pass.png", "L")
    assert (tmp_path / "cost_vs_pass.png").read_bytes().startswith(b"\x89PNG")
