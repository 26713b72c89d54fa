"""How fast the marketplace runs: `sale loadtest` (auctions/s with scripted agents, a flood,
scale-out, a trace) and `sale ingest-bench` (recorder and replay events/s). Each starts what it
measures itself, so neither reads a config."""

from __future__ import annotations

import argparse

from marketplace.app.cli.arguments import Commands
from marketplace.shared.config import Config, load_config


def add_loadtest(commands: Commands) -> None:
    load = commands.add_parser(
        "loadtest", help="auctions/s with scripted agents, next to the raw broker rate"
    )
    load.add_argument(
        "--agent-counts",
        type=int,
        nargs="+",
        default=[4, 16],
        metavar="N",
        help="one row per count of scripted agents (default: 4 16; any count, e.g. 4 16 64 256)",
    )
    load.add_argument(
        "--mechanism",
        nargs="+",
        choices=["lean", "paper"],
        default=["lean"],
        help="the auction of the rows (default: lean); both: paper's rows beside lean's",
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
        "--row-seconds",
        type=float,
        default=60.0,
        help="a row posts for at most this long, then waits for its open auctions (default: 60)",
    )
    load.add_argument(
        "--quick",
        action="store_true",
        help="small rows (20 auctions, 4 then 8 in flight, 20 s at most): it runs; no figures",
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
    # the agents of one process of a load run, started by the run itself with its config
    load.add_argument("--host-agents", type=int, nargs="+", help=argparse.SUPPRESS)
    load.set_defaults(run=run_loadtest, needs_config=False)


def run_loadtest(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.performance import loadtest

    if args.host_agents:
        return run_agent_host(args)
    if args.scale_out:
        from marketplace.performance import scale_out

        return scale_out.run(args.scale_out)
    load = loadtest.Load(args.auctions, args.in_flight, args.max_in_flight, args.row_seconds)
    if args.quick:
        load = loadtest.QUICK
    return loadtest.run(args.agent_counts, load, args.flood, args.rate, args.trace, args.mechanism)


def run_agent_host(args: argparse.Namespace) -> int:
    """Agents `--host-agents` of the `--agent-counts` of a load run, in this process, until
    SIGTERM; the run's config (its broker and keys) is the one `--config` names."""
    import asyncio

    from marketplace.app.cli import wiring
    from marketplace.performance import agent_hosts
    from marketplace.services.process import configure_logging, until_signalled

    config = load_config(args.config_path, join=True)
    configure_logging(f"agents{args.host_agents[0]}")
    wiring.secure(config)
    [count], [mechanism] = args.agent_counts, args.mechanism
    ready = args.config_path.parent / "ready"

    async def run(stop: asyncio.Event) -> None:
        await agent_hosts.serve(config.broker, args.host_agents, count, mechanism, ready, stop)

    asyncio.run(until_signalled(run, "agents", config.broker))
    return 0


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
