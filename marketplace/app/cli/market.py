"""The marketplace itself: `sale up` (the whole stack), each service on its own (`monitor`,
`auctioneer`, `recorder`, `verifier`, `agent`), the front door (`serve`) and the topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from marketplace.app.cli import wiring
from marketplace.app.cli.arguments import Commands, port
from marketplace.shared.config import Config


def add_up(commands: Commands) -> None:
    up = commands.add_parser("up", help="run broker, Postgres and the services in the foreground")
    up.add_argument(
        "--run-dir",
        help="where logs, keys and the endpoints other commands join go (default: .sale beside "
        "the config file)",
    )
    up.set_defaults(run=run_up)


def run_up(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app.stack import up

    run_dir = Path(args.run_dir) if args.run_dir else args.config_path.absolute().parent / ".sale"
    return asyncio.run(up(config, args.config_path, run_dir))


def add_topics(commands: Commands) -> None:
    topics = commands.add_parser("topics", help="list topics, partitions and consumer lag")
    topics.set_defaults(run=run_topics)


def run_topics(config: Config, args: argparse.Namespace) -> int:
    from marketplace.shared.offsets import topic_status

    wiring.need_broker(config)
    rows = asyncio.run(topic_status(config.broker))
    print(f"{'topic':<28} {'partitions':>10} {'messages':>9}  lag by consumer group")
    for row in rows:
        lag = ", ".join(f"{group}={n}" for group, n in sorted(row.lag.items())) or "-"
        print(f"{row.topic:<28} {row.partitions:>10} {row.messages:>9}  {lag}")
    return 0


def add_monitor(commands: Commands) -> None:
    monitor = commands.add_parser("monitor", help="print one line per event on every stream")
    monitor.set_defaults(run=run_monitor)


def run_monitor(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, serve

    configure_logging("monitor")
    wiring.secure(config)
    asyncio.run(serve(wiring.monitor(config)))
    return 0


def add_auctioneer(commands: Commands) -> None:
    auctioneer = commands.add_parser("auctioneer", help="run the auctioneer service")
    auctioneer.set_defaults(run=run_auctioneer)


def run_auctioneer(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled

    configure_logging("auctioneer")
    wiring.secure(config)
    auctioneer = wiring.auctioneer(config)
    # no `broker`: the auctioneer watches it itself, so as to decide nothing on a lost log
    asyncio.run(until_signalled(auctioneer.run, "auctioneer"))
    return 0


def add_recorder(commands: Commands) -> None:
    recorder = commands.add_parser("recorder", help="record every event in Postgres")
    recorder.set_defaults(run=run_recorder)


def run_recorder(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled

    wiring.need_database(config)
    configure_logging("recorder")
    wiring.secure(config)
    recorder = wiring.recorder(config)
    asyncio.run(until_signalled(recorder.run, "recorder", config.broker))
    return 0


def add_verifier(commands: Commands) -> None:
    verifier = commands.add_parser("verifier", help="verify results against the hidden checks")
    verifier.set_defaults(run=run_verifier)


def run_verifier(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled
    from marketplace.shared.sandbox import SandboxUnavailable

    configure_logging("verifier")
    wiring.secure(config)
    verifier = wiring.verifier(config)
    try:
        asyncio.run(until_signalled(verifier.run, "verifier", config.broker))
    except SandboxUnavailable as exc:  # the container lacks what grading needs: exit 1
        print(f"sale verifier: {exc}", file=sys.stderr)
        return 1
    return 0


def add_agent(commands: Commands) -> None:
    agent = commands.add_parser("agent", help="run one agent of [[agents]]")
    agent.add_argument("--id", required=True, help="the agent's id in [[agents]]")
    agent.set_defaults(run=run_agent)


def run_agent(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled

    settings = config.agent(args.id)
    configure_logging(f"agent.{settings.id}")
    wiring.secure(config)
    service = wiring.agent(config, settings)

    async def run(stop: asyncio.Event) -> None:
        async with service:
            await stop.wait()

    asyncio.run(until_signalled(run, f"agent.{settings.id}", config.broker))
    return 0


def add_serve(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve", help="the front door: OpenAI-compatible API, operator's dashboard, /metrics"
    )
    serve.add_argument("--host", help="address to listen on (default: [serve].host, 127.0.0.1)")
    serve.add_argument("--port", type=port, help="port (default: [serve].port, 8080)")
    serve.set_defaults(run=run_serve)


def run_serve(config: Config, args: argparse.Namespace) -> int:
    """`sale serve`: the front door (OpenAI-compatible API, dashboard, /metrics)."""
    from marketplace.app import serve

    wiring.need_broker(config)
    wiring.secure(config)
    host = args.host or config.serve.host
    port_ = config.serve.port if args.port is None else args.port
    return asyncio.run(serve.serve(config, host, port_))
