"""How often the plan-token recount would refuse an honest bid: every completion archived from
the real models, its generated text recounted with the model's tokenizer against the count the
model reported (`sale bench recount`). A refusal here is a false one: these are honest counts."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from marketplace.shared.tokens import Tokenizers


@dataclass
class Tally:
    completions: int = 0
    refused: int = 0
    ratios: list[float] = field(default_factory=list)  # recount / reported

    def line(self, model: str) -> str:
        ratios = sorted(self.ratios) or [float("nan")]
        middle, top = ratios[len(ratios) // 2], ratios[-1]
        return (
            f"{model:40} {self.completions:6} completions, {self.refused} refused "
            f"({self.refused / max(self.completions, 1):.2%}); recount/reported median "
            f"{middle:.3f}, max {top:.3f}"
        )


def completions(archive: Path) -> Iterator[tuple[str, str, int]]:
    """(model, generated text, tokens the model reported) of each archived completion."""
    with gzip.open(archive, "rt") as rows:
        for row in map(json.loads, rows):
            if row.get("table") == "completions":
                done = row["completion"]
                yield row["model"], done["text"], done["completion_tokens"]


def recount(archive: Path, tokenizers: Tokenizers) -> dict[str, Tally]:
    """Each model's tally; models whose tokenizer is not at hand are left out."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    for model, text, reported in completions(archive):
        counted = tokenizers.count(model, text)
        if counted is None:
            continue
        tally = tallies[model]
        tally.completions += 1
        tally.refused += tokenizers.understated(model, text, reported) is not None
        if reported:
            tally.ratios.append(counted / reported)
    return dict(tallies)
