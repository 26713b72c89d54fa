"""The benchmark: `sale bench` (choose the executor, fill the matrix, run live, compare every
method, the archive of computed work), `sale weights fit` and `sale lean fit` (the mechanisms'
settings, fitted on the matrix)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.app.cli import wiring
from marketplace.app.cli.arguments import ARCHIVE, BesideConfig, Commands, add_task_sets
from marketplace.shared.config import Config, ConfigError

if TYPE_CHECKING:
    from marketplace.evaluation.matrix import Plan
    from marketplace.evaluation.prices import PriceList

TRAIN, DEV, TEST = ["mbpp:0:100"], ["mbpp:100:200"], ["humaneval:0:164"]  # the default splits
FRONTIER_TESTS = ["humaneval:0:164", "mbpp:200:397"]  # the evaluation splits, one sweep each
FRONTIER_OUT = "docs/benchmark/frontier"


def add_weights(commands: Commands) -> None:
    weights = commands.add_parser("weights", help="fit the scoring weights on the matrix")
    weights.add_argument("action", choices=["fit"], help="fit: on the matrix of --tasks")
    add_task_sets(weights, "--tasks", "the training split (default: mbpp:0:100)", TRAIN)
    weights.add_argument("--lambda", dest="lam", type=float, default=0.1, help="cost's weight")
    weights.add_argument("--seed", type=int, default=0, help="the fit's random seed")
    weights.add_argument("--out", default="weights.toml", help="the weights file to write")
    weights.set_defaults(run=run_weights)


def run_weights(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import fit, matrix

    prices = {a.id: a.price for a in config.agents}
    with wiring.event_log(config) as logged:
        train = asyncio.run(matrix.load_split(logged, args.tasks))
    complete = train.complete_tasks(plans=True)
    if not complete:
        raise ConfigError(
            f"no complete matrix rows for {' '.join(args.tasks)}: run `sale bench matrix`"
        )
    weights, utility = fit.fit(train, prices, args.lam, args.seed)
    note = (
        f"sale weights fit --tasks {' '.join(args.tasks)} --lambda {args.lam} --seed {args.seed}: "
        f"{len(complete)} training tasks, training utility {utility:.4f}"
    )
    Path(args.out).write_text(fit.weights_toml(weights, note))
    print(f"{note}\nwritten to {args.out}:\n{Path(args.out).read_text()}")
    return 0


def add_lean(commands: Commands) -> None:
    lean = commands.add_parser("lean", help="fit the lean auction's priors and settings")
    lean.add_argument("action", choices=["fit"], help="fit: priors and settings")
    add_task_sets(lean, "--train", "the priors come from here (default: mbpp:0:100)", TRAIN)
    add_task_sets(lean, "--dev", "the settings are chosen here (default: mbpp:100:200)", DEV)
    lean.add_argument("--out", default="weights.toml", help="the weights file to update")
    lean.set_defaults(run=run_lean)


def run_lean(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import lean_replay

    with wiring.event_log(config) as logged:
        try:
            table, ranked = asyncio.run(lean_replay.fit_lean(logged, args.train, args.dev))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for c in ranked[:10]:
        s = c.settings
        print(
            f"value {s.value:8.4g}  neighbours {s.neighbours:3}  strength {s.strength:4g}  "
            f"min similarity {s.min_similarity:3g}  feedback {'yes' if s.feedback else 'no ':3}  "
            f"pass gain {c.pass_gain:6.1%}  cost gain {c.cost_gain:6.1%}"
        )
    note = (
        f"sale lean fit --train {' '.join(args.train)} --dev {' '.join(args.dev)}: priors from "
        f"the training split, settings chosen on the development split (of {len(ranked)} tried)"
    )
    out = Path(args.out)
    existing = out.read_text() if out.exists() else ""
    out.write_text(lean_replay.with_lean(existing, lean_replay.lean_toml(table, note)))
    print(f"{note}\nwritten to {out}")
    return 0


def add_bench(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="the benchmark: choose the executor, fill the matrix, run live, compare every method",
    )
    bench.add_argument(
        "action",
        choices=[
            "matrix",
            "live",
            "export",
            "worker",
            "executors",
            "compare",
            "frontier",
            "recount",
        ],
        help="executors: compare prompt shapes; matrix: every agent on every task; live: a run "
        "through the marketplace; export: the archive; compare: all of it on a split; frontier: "
        "every method at a sweep of price spreads, from the archive alone; worker: one matrix "
        "process (started by matrix); recount: the plan-token recount on the archive",
    )
    add_task_sets(bench, "--train", "compare, frontier: the training split", TRAIN)
    add_task_sets(
        bench,
        "--test",
        "compare: the split compared on (default: humaneval:0:164); frontier: each task set a "
        f"split of its own (default: {' '.join(FRONTIER_TESTS)})",
    )
    bench.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="compare: a TOML price list, one table per agent id (input, cached_input, output "
        "per million tokens, any currency; examples/prices/), instead of the config's prices",
    )
    bench.add_argument(
        "--ratios",
        nargs="+",
        type=_ratio,
        metavar="R",
        help="frontier: the ratios of M's draft cost to L's to sweep below this machine's "
        "(default: 0.5 0.4 0.3 0.25 0.2 0.15 0.1 0.07 0.05)",
    )
    bench.add_argument("--agents", nargs="+", help="executors: these agents (default: all)")
    bench.add_argument(
        "--styles",
        nargs="+",
        help="executors: the prompt shapes to compare (coding: chat complete continue; search: "
        "the searcher prompts plain short example; default: all of the tasks' kind)",
    )
    bench.add_argument(
        "--out",
        help="executors: a markdown file for the table; compare: a folder (docs/benchmark; "
        f"with --prices, docs/benchmark/prices/FILE-STEM); frontier: a folder ({FRONTIER_OUT})",
    )
    bench.add_argument(
        "--with-plan",
        action="store_true",
        help="executors: also the agent's configured shape with its own plan as a hint",
    )
    add_task_sets(
        bench,
        "--tasks",
        "task sets DATASET:START:STOP (default: the training and evaluation splits)",
        [*TRAIN, *TEST],
    )
    add_task_sets(
        bench,
        "--plans",
        "matrix: task sets that also get every agent's plan and reviews (the paper's auction)",
        [*TRAIN, *TEST],
        nargs="*",
    )
    bench.add_argument(
        "--no-plans",
        action="store_true",
        help="compare: no plans nor reviews (SALE-paper is left out of the table, which says so)",
    )
    bench.add_argument(
        "--escalate",
        nargs="*",
        default=[],
        metavar="CHEAPER:DEARER",
        help="matrix: agent pairs whose escalation drafts to compute (e.g. M:L)",
    )
    bench.add_argument("--workers", type=int, default=2, help="model processes at once")
    bench.add_argument(
        "--variant",
        default="full",
        choices=["lean", "full", "no-memory"],  # marketplace.evaluation.live.VARIANTS
        help="live: the lean auction, or the paper's with or without memory (default: full)",
    )
    bench.add_argument("--order", type=int, default=0, help="live: 0 = dataset order")
    bench.add_argument(
        "--run-dir", default=BesideConfig(".sale/bench"), help="live: logs and config"
    )
    bench.add_argument(
        "--archive",
        default=ARCHIVE,
        help="the computed work as a file: loaded first if it exists; `export` writes it",
    )
    bench.set_defaults(run=run_bench)


def _ratio(text: str) -> float:
    """A `--ratios` value: a positive number (M's draft cost over L's)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a ratio is a number above 0, not {text!r}")
    return value


def run_bench(config: Config, args: argparse.Namespace) -> int:
    if args.action == "worker":
        return _worker(config, args)
    if args.action == "recount":
        return _recount(config, Path(args.archive))
    args.price_list = _price_list(config, args)  # a bad file is refused before anything starts
    with wiring.event_log(config) as config:
        url = config.database.url
        os.environ["DATABASE_URL"] = url  # for the workers, which read the same config
        if args.action == "export":
            counts = asyncio.run(_archive(url, Path(args.archive), export=True))
            print(f"{args.archive}: {counts}")
            return 0
        asyncio.run(restore(url, Path(args.archive)))
        return _ON_THE_LOG[args.action](config, args)


def _worker(config: Config, args: argparse.Namespace) -> int:
    """One matrix process (`matrix_job`'s command line), until the matrix is full."""
    from marketplace.evaluation import matrix
    from marketplace.services.process import configure_logging

    configure_logging("bench.worker")
    plan = matrix.make_plan(config, args.tasks, args.plans, args.escalate)
    return 0 if asyncio.run(matrix.work(config, plan)) >= 0 else 1


def matrix_job(
    config: Config, args: argparse.Namespace, tasks: list[str], plans: list[str]
) -> tuple[Plan, list[str]]:
    """The plan of the matrix of `tasks` (plans and reviews too on `plans`, escalations as
    --escalate says), and the command line of one `sale bench worker` process that fills it."""
    from marketplace.evaluation import matrix

    plan = matrix.make_plan(config, tasks, plans, args.escalate)
    worker = [sys.executable, "-m", "marketplace.app.cli", "--config", str(args.config_path)]
    worker += ["bench", "worker", "--tasks", *tasks, "--plans", *plans]
    worker += ["--escalate", *args.escalate] if args.escalate else []
    return plan, worker


def _matrix(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import matrix

    plan, worker = matrix_job(config, args, args.tasks, args.plans)
    name = asyncio.run(matrix.build_matrix(config, worker, plan, args.workers))
    print(f"matrix {name}: complete")
    return 0


def _compare(config: Config, args: argparse.Namespace) -> int:
    """The whole comparison on any split, in one command (`marketplace.evaluation.compare`)."""
    from marketplace.evaluation.compare import compare

    test = args.test or TEST
    price_list = args.price_list
    specs = [*args.train, *test]
    plan, worker = matrix_job(config, args, specs, [] if args.no_plans else specs)
    priced = f"docs/benchmark/prices/{args.prices.stem}" if args.prices else "docs/benchmark"
    out = Path(args.out or priced)
    text = asyncio.run(
        compare(config, plan, worker, args.workers, args.train, test, out, price_list)
    )
    print(f"{text}\nwritten to {out}/")
    return 0


def _price_list(config: Config, args: argparse.Namespace) -> PriceList | None:
    """The user's price list of `--prices` (compare only), read and checked."""
    from marketplace.evaluation.prices import read_prices

    if args.prices is None:
        return None
    if args.action != "compare":
        raise ConfigError(f"--prices is for `sale bench compare`, not `sale bench {args.action}`")
    return read_prices(args.prices, [a.id for a in config.agents])


def _frontier(config: Config, args: argparse.Namespace) -> int:
    """Every method at a sweep of price spreads, from the matrix alone (no model call)."""
    from marketplace.evaluation import frontier, frontier_page

    tests = args.test or FRONTIER_TESTS
    ratios = args.ratios or frontier.RATIOS
    out = Path(args.out or FRONTIER_OUT)
    command = f"sale bench frontier --train {' '.join(args.train)} --test {' '.join(tests)}"
    command += f" --ratios {' '.join(f'{r:g}' for r in args.ratios)}" if args.ratios else ""
    command += f" --out {args.out}" if args.out else ""

    def progress(line: str) -> None:
        print(line, flush=True)

    sweeps = asyncio.run(frontier.frontier(config, args.train, tests, ratios, progress))
    text = frontier_page.write(sweeps, out, command)
    print(f"{text}\nwritten to {out}/")
    return 0


def _executors(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import executors

    compared = asyncio.run(
        executors.compare(config, args.tasks, args.agents, args.styles, args.with_plan)
    )
    print(compared.table)
    if args.out:
        compared.write(Path(args.out))
        print(f"written to {args.out}")
    return 0


def _live(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app import job
    from marketplace.evaluation import live, matrix
    from marketplace.evaluation.task_sets import parse_task_sets

    name = live.run_name(matrix.fingerprint(config.agents), args.variant, args.order)
    run_dir = Path(args.run_dir) / name
    postings = parse_task_sets(args.tasks)
    path, run_config, todo = asyncio.run(
        live.prepare(config, args.variant, args.order, postings, run_dir)
    )
    print(f"{name}: {len(todo)} tasks")
    return asyncio.run(job.run_job(run_config, path, todo, run_dir))


_ON_THE_LOG = {
    "matrix": _matrix,
    "compare": _compare,
    "frontier": _frontier,
    "executors": _executors,
    "live": _live,
}


def _recount(config: Config, archive: Path) -> int:
    """Prints how often the plan-token recount would refuse the archive's honest completions."""
    from marketplace.evaluation.recount import recount

    tallies = recount(archive, wiring.tokenizers(config))
    for model, tally in sorted(tallies.items()):
        print(tally.line(model))
    if not tallies:
        print("no archived model's vocabulary is installed (see `sale models install`)")
    return 0


async def restore(url: str, path: Path) -> None:
    """Loads the archive of computed work into the database first, if there is one, so the
    benchmark replays from cached calls on a fresh machine."""
    if path.exists():
        print(f"{path}: rows added {await _archive(url, path, export=False)}")


async def _archive(url: str, path: Path, export: bool) -> dict[str, int]:
    import asyncpg

    from marketplace.evaluation import archive

    conn = await asyncpg.connect(url)
    try:
        return await (archive.export(conn, path) if export else archive.restore(conn, path))
    finally:
        await conn.close()
