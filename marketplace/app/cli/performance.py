"""How fast the marketplace runs: `sale loadtest` (auctions/s with scripted agents, a flood,
scale-out, a trace) and `sale ingest-bench` (recorder and replay events/s). Each starts what it
measures itself, so neither reads a config."""

from __future__ import annotations

import argparse

from marketplace.app.cli.arguments import Commands
from marketplace.shared.config import Config


def add_loadtest(commands: Commands) -> None:
    load = commands.add_parser(
        "loadtest", help="auctions/s with scripted agents, next to the raw broker rate"
    )
    load.add_argument(
        "--agent-counts",
        type=int,
        nargs="+",
        default=[3, 8],
        metavar="N",
        help="one row per count of scripted agents (default: 3 8)",
    )
    load.add_argument(
        "--auctions",
        type=int,
        default=300,
        help="auctions per row (at least twice those in flight)",
    )
    load.add_argument(
        "--in-flight", type=int, default=16, help="auctions open at once in the first row"
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=1024,
        help="the last row's (the count doubles from row to row until auctions/s stops growing)",
    )
    load.add_argument(
        "--flood", type=int, default=0, help="instead: post this many tasks at once (backpressure)"
    )
    load.add_argument("--rate", type=float, default=900.0, help="tasks/s of the flood")
    load.add_argument(
        "--scale-out",
        type=int,
        default=0,
        metavar="N",
        help="instead: N tasks through 3 auctioneer and 2 recorder processes on 8 partitions, "
        "then the counts (each auction decided once, each event recorded once)",
    )
    load.add_argument(
        "--trace",
        action="store_true",
        help="instead: where an auction's time goes, hop by hop (the first agent count)",
    )
    load.set_defaults(run=run_loadtest, needs_config=False)


def run_loadtest(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.performance import loadtest

    if args.scale_out:
        from marketplace.performance import scale_out

        return scale_out.run(args.scale_out)
    load = loadtest.Load(args.auctions, args.in_flight, args.max_in_flight)
    return loadtest.run(args.agent_counts, load, args.flood, args.rate, args.trace)


def add_ingest_bench(commands: Commands) -> None:
    bench = commands.add_parser(
        "ingest-bench", help="recorder and replay events/s, next to the raw Kafka consume rate"
    )
    bench.add_argument("--events", type=int, default=20000, help="events to publish and record")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="run the recorder and the replay under cProfile; print where their time goes",
    )
    bench.set_defaults(run=run_ingest_bench, needs_config=False)


def run_ingest_bench(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.performance import ingest

    return ingest.run(args.events, args.profile)
