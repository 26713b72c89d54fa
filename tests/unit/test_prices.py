"""A user's price list (`sale bench compare --prices FILE`): read and checked, each error naming
the file and the agent or field at fault, and the lean table refitted at its prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.app.cli import main
from marketplace.evaluation.prices import read_prices, repriced_lean
from marketplace.shared.config import ConfigError, LeanConfig, PriorConfig
from schemas.events import Price
from tests.unit.test_lean_method import matrix

AGENTS = ["S", "M", "L"]
GOOD = """
[S]
input = 0.02
output = 0.08
[M]
input = 0.1
cached_input = 0.025
output = 0.4
[L]
input = 1
output = 4.0
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


def test_a_price_list_gives_each_agent_its_three_prices(tmp_path: Path) -> None:
    prices = read_prices(written(tmp_path, GOOD), AGENTS).prices
    assert prices["M"] == Price(input=0.1, cached_input=0.025, output=0.4)
    assert prices["S"].cached_input is None  # left out: the input price applies
    assert prices["L"].cost(1_000_000, 1_000_000) == pytest.approx(5.0)


def test_the_example_price_list_reads_for_the_default_pool() -> None:
    example = Path(__file__).parents[2] / "examples" / "prices" / "hosted-spread.toml"
    prices = read_prices(example, AGENTS).prices
    assert prices["M"].output / prices["L"].output == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (GOOD.replace("[M]", "[X]"), r"\[X\] is not an agent of the config"),
        (GOOD.split("[L]")[0], r"\[L\] is missing"),
        (GOOD.replace("output = 0.4", 'output = "0.4"'), r"\[M\]\.output: must be a number"),
        (GOOD.replace("output = 0.4", "output = -0.4"), r"\[M\]\.output: must be a finite"),
        (GOOD.replace("output = 0.4", "output = nan"), r"\[M\]\.output: must be a finite"),
        (GOOD.replace("output = 0.4", "output = true"), r"\[M\]\.output: must be a number"),
        (GOOD.replace("input = 1\n", ""), r"\[L\]\.input is missing"),
        (GOOD.replace("cached_input", "cache_input"), r"\[M\]\.cache_input: unknown field"),
        ("S = 3\n[M]" + GOOD.split("[M]")[1], r"\[S\] must be a table"),
        ("[S\ninput = 1", "not TOML"),
    ],
)
def test_a_bad_price_list_is_refused_naming_the_agent_or_field(
    tmp_path: Path, text: str, named: str
) -> None:
    path = written(tmp_path, text)
    with pytest.raises(ConfigError, match=named) as refused:
        read_prices(path, AGENTS)
    assert str(refused.value).startswith(f"prices file {path}: ")


def test_a_missing_price_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"none\.toml: cannot read it"):
        read_prices(tmp_path / "none.toml", AGENTS)


def test_sale_refuses_a_bad_price_list_in_one_line_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(tmp_path, GOOD.split("[L]")[0])
    config = Path(__file__).parents[2] / "sale.toml"
    argv = ["--config", str(config), "bench", "compare", "--prices", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sale: ") and "[L] is missing" in err and "\n" not in err


def test_prices_are_for_compare_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).parents[2] / "sale.toml"
    argv = ["--config", str(config), "bench", "frontier", "--prices", str(written(tmp_path, GOOD))]
    assert main(argv) == 2
    assert "--prices is for `sale bench compare`" in capsys.readouterr().err


def test_the_lean_table_is_refitted_at_the_new_prices() -> None:
    """Every draft is 1 Mtok: at M 1 and L 4 a draft costs its agent's price; at M 0.5 and L 2,
    half. The priors' costs follow; the worth of a right answer keeps its ratio to L's."""
    train = matrix({"t0": {"M": (True, True), "L": (True, True)}})
    dear = {"M": Price(input=1.0, output=1.0), "L": Price(input=4.0, output=4.0)}
    cheap = {"M": Price(input=0.5, output=0.5), "L": Price(input=2.0, output=2.0)}
    table = repriced_lean(
        LeanConfig(value=12.0, priors={a: PriorConfig(**dict(PRIOR, cost=4.0)) for a in "ML"}),
        train,
        dear,
    )
    assert table.priors["M"].cost == pytest.approx(1.0)
    assert table.value == pytest.approx(12.0)  # L's prior cost was 4 and is 4
    again = repriced_lean(table, train, cheap)
    assert (again.priors["M"].cost, again.priors["L"].cost) == pytest.approx((0.5, 2.0))
    assert again.value == pytest.approx(6.0)
    assert again.priors["M"].examples_pass == pytest.approx(2 / 3)  # rates do not move
    assert repriced_lean(LeanConfig(), train, cheap) == LeanConfig()  # no priors: nothing to fit


PRIOR = {"examples_pass": 0.5, "right_if_pass": 0.5, "right_if_fail": 0.5}
