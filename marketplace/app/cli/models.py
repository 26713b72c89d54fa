"""What the agents run on: `sale models` (the local GGUF models: install, list, measure,
calibrate) and `sale corpus` (the deep-search corpora: an index, a search, the FanOutQA tasks)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.app.cli.arguments import Commands, UsageError, add_task_sets
from marketplace.shared.config import CONFIG_ENV, Config, ConfigError, load_config

if TYPE_CHECKING:
    from agents.tools.search import SearchTool


def add_models(commands: Commands) -> None:
    models = commands.add_parser(
        "models", help="install, list, measure or calibrate the local GGUF models"
    )
    models.add_argument(
        "action",
        choices=["install", "list", "measure", "calibrate"],
        help="install: fetch and check the models; list: where they are; measure: each tier "
        "alone on HumanEval; calibrate: each tier's prices from its CPU-seconds",
    )
    models.add_argument(
        "--tier", choices=["S", "M", "L", "all"], default="all", help="default: all"
    )
    add_task_sets(
        models,
        "--tasks",
        "measure: the HumanEval problems (default: humaneval:0:20)",
        "humaneval:0:20",
        nargs=None,
    )
    models.add_argument(
        "--out",
        help="measure: its resumable log (default: .sale/measure.jsonl); calibrate: the record "
        "(default: .sale/calibration.json); by default beside the config",
    )
    models.set_defaults(run=run_models, needs_config=False)


def run_models(config: Config | None, args: argparse.Namespace) -> int:
    from agents import install

    tiers = list(install.MODELS) if args.tier == "all" else [args.tier]
    if args.action == "calibrate":
        from marketplace.evaluation import calibrate

        return calibrate.run(tiers, _out(args, ".sale/calibration.json"))
    if args.action == "measure":
        from marketplace.evaluation import measure
        from marketplace.evaluation.task_sets import parse_spec

        name, start, stop = parse_spec(args.tasks)
        if name != "humaneval":
            raise UsageError(f"--tasks {args.tasks}: `models measure` runs HumanEval problems")
        return measure.run(tiers, f"{start}:{stop}", _out(args, ".sale/measure.jsonl"))
    if args.action == "install":
        for tier in tiers:
            print(f"{tier}: {install.install(tier)}")
        return 0
    for spec, path, ok in install.list_models():
        print(f"{spec.tier}  {spec.name:<40} {'installed' if ok else 'missing':<9}  {path}")
    return 0


def _out(args: argparse.Namespace, default: str) -> Path:
    """--out, else `default` beside the config: the same file from any working directory."""
    return Path(args.out) if args.out else args.config_path.absolute().parent / default


def add_corpus(commands: Commands) -> None:
    corpus = commands.add_parser(
        "corpus", help="the deep-search corpora: build an index, search one, the FanOutQA tasks"
    )
    corpus.set_defaults(needs_config=False)
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    install = corpus_commands.add_parser(
        "install", help="fetch a corpus and build its search index (once; a changed source again)"
    )
    install.add_argument(
        "id", nargs="?", metavar="ID", help="a corpus id of [corpora] (default: every one)"
    )
    install.set_defaults(run=run_corpus_install)
    search = corpus_commands.add_parser(
        "search", help="search a corpus as an agent's search tool does, and print the hits"
    )
    search.add_argument("id", metavar="ID", help="a corpus id of [corpora], e.g. wiki")
    search.add_argument("query", metavar="QUERY", help="words to search for")
    search.add_argument("-k", type=int, default=5, help="hits at most (default: 5)")
    search.set_defaults(run=run_corpus_search)
    tasks = corpus_commands.add_parser(
        "tasks", help="how many FanOutQA questions the wiki corpus answers, by kind and split"
    )
    tasks.set_defaults(run=run_corpus_tasks)


def _corpus_config(args: argparse.Namespace) -> Config:
    """The config when one is named or ./sale.toml exists (a bad one fails naming the field),
    else the defaults, whose one corpus is "wiki": set-up runs `sale corpus install` anywhere."""
    named = args.config_sub or args.config or os.environ.get(CONFIG_ENV)
    return load_config(args.config_path) if named or args.config_path.exists() else Config()


def _search_tool(
    config: Config, corpus_id: str, progress: Callable[[str], None] = print
) -> SearchTool:
    from agents.tools.corpus import CorpusError
    from agents.tools.search import load_tool

    try:
        source = config.corpus(corpus_id)
    except ConfigError as exc:  # an id the user typed, not a fault of the file
        raise UsageError(str(exc)) from None
    try:
        return load_tool(source, progress=progress)
    except (CorpusError, RuntimeError) as exc:  # a folder it cannot use; no registry to fetch from
        raise UsageError(f"corpus {corpus_id}: {exc}") from None


def run_corpus_install(config: Config | None, args: argparse.Namespace) -> int:
    config = _corpus_config(args)
    for corpus_id in [args.id] if args.id else list(config.corpora):
        started = time.perf_counter()
        tool = _search_tool(config, corpus_id, lambda line, c=corpus_id: print(f"{c}: {line}"))
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in tool.index_path.rglob("*") if p.is_file())
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
        print(
            f"{corpus_id}: {tool.document_count} documents, {tool.passage_count} passages, "
            f"index {shown} in {tool.index_path} ({seconds:.1f} s)"
        )
    return 0


def run_corpus_search(config: Config | None, args: argparse.Namespace) -> int:
    tool = _search_tool(_corpus_config(args), args.id)
    hits = tool.search(args.query, k=args.k)
    if not hits:
        print(f"no hits for {args.query!r} in {args.id}")
    for n, hit in enumerate(hits, start=1):
        print(f"{n}. {hit.title}  (score {hit.score:.2f})\n   {hit.passage}\n")
    return 0


def run_corpus_tasks(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.evaluation import fanoutqa
    from marketplace.evaluation.task_sets import SEARCH_SETS

    try:
        kept, counts = fanoutqa.questions()
    except RuntimeError as exc:  # no registry to fetch the dataset or the corpus from
        raise UsageError(str(exc)) from None
    print(f"{fanoutqa.DEV_FILE.requirement} dev set against the wiki corpus:")
    for what, n in sorted(counts.items(), key=lambda item: (not item[0].startswith("kept"), item)):
        print(f"{n:6}  {what}")
    for name, split in SEARCH_SETS.items():
        chosen = [q for q in kept if split is None or q.split == split]
        hops = ", ".join(f"{h}-hop {sum(q.hops == h for q in chosen)}" for h in ("multi", "single"))
        print(f"task set {name}:0:{len(chosen)}  ({hops})")
    return 0
