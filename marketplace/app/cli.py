"""`sale`: the command line of the marketplace. Each subcommand loads the config first, so a
bad file fails before anything starts; what a user can get wrong (a flag, the database, the
broker, an empty log) ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from marketplace.shared.config import (
    CONFIG_ENV,
    Config,
    ConfigError,
    config_path,
    load_config,
    load_weights,
)
from marketplace.shared.extras import MissingExtra

if TYPE_CHECKING:
    from agents.tools.search import SearchTool
    from marketplace.log.ledger import Ledger
    from marketplace.log.memory import Memory
    from marketplace.log.replay import Log
    from marketplace.shared.tokens import Tokenizers


def _secure(config: Config) -> None:
    """This process signs and checks with the keys `[security]` names; bad ones fail here."""
    from marketplace.shared import signing
    from marketplace.shared.keyfiles import trust_of

    signing.install(trust_of(config.security))


def _up(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app.stack import up

    run_dir = Path(args.run_dir) if args.run_dir else args.config_path.absolute().parent / ".sale"
    return asyncio.run(up(config, args.config_path, run_dir))


def _topics(config: Config, args: argparse.Namespace) -> int:
    from marketplace.shared.offsets import topic_status

    if not config.broker.bootstrap:
        raise ConfigError("[broker].bootstrap: not set and KAFKA_BOOTSTRAP is empty; which broker?")
    rows = asyncio.run(topic_status(config.broker))
    print(f"{'topic':<28} {'partitions':>10} {'messages':>9}  lag by consumer group")
    for row in rows:
        lag = ", ".join(f"{group}={n}" for group, n in sorted(row.lag.items())) or "-"
        print(f"{row.topic:<28} {row.partitions:>10} {row.messages:>9}  {lag}")
    return 0


def _monitor(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services import monitor
    from marketplace.services.process import configure_logging, serve
    from marketplace.shared.bus import Bus

    configure_logging("monitor")
    _secure(config)
    bus = Bus(config.broker, producer="monitor")
    monitor.attach(bus, config)
    asyncio.run(serve(bus))
    return 0


def _auctioneer(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.auctioneer import Auctioneer
    from marketplace.services.process import configure_logging, until_signalled
    from marketplace.shared.bus import Bus

    configure_logging("auctioneer")
    _secure(config)
    bus = Bus(config.broker, producer="auctioneer")
    auctioneer = Auctioneer(
        config, bus, _memory(config), tokenizers=_tokenizers(config), ledger=_ledger(config)
    )
    # no `broker`: the auctioneer watches it itself, so as to decide nothing on a lost log
    asyncio.run(until_signalled(auctioneer.run, "auctioneer"))
    return 0


def _tokenizers(config: Config) -> Tokenizers:
    """The vocabularies of the configured local models: bids of theirs get their plans recounted."""
    from agents.install import model_path
    from marketplace.shared.tokens import Tokenizers

    local = [a for a in config.agents if a.backend == "llama_cpp"]
    return Tokenizers({a.model: a.path or model_path(a.tier) for a in local if a.path or a.tier})


def _ledger(config: Config) -> Ledger:
    """Where tenants' spend is read (the Postgres log); tenant budgets need one."""
    from marketplace.log.ledger import NoLedger, PostgresLedger

    if config.database.url:
        return PostgresLedger(config.database.url)
    if budgeted := sorted(name for name, t in config.tenants.items() if t.budget is not None):
        raise ConfigError(
            f"tenants.{budgeted[0]}.budget: a tenant budget needs [database].url (spend is "
            "summed from the log), and it is not set and DATABASE_URL is empty"
        )
    return NoLedger()


def _memory(config: Config) -> Memory:
    """The auction memory in Postgres when there is a database and the embeddings model."""
    from marketplace.log.memory import NoMemory, PostgresMemory
    from marketplace.shared import embeddings

    log = logging.getLogger("marketplace.services.auctioneer")
    if not config.database.url:
        log.warning("no database configured: refinement runs without memory examples")
        return NoMemory()
    if not embeddings.available():
        log.warning(
            "embeddings unavailable (install the `memory` extra): "
            "refinement runs without memory examples"
        )
        return NoMemory()
    return PostgresMemory(config.database.url)


def _recorder(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled
    from marketplace.services.recorder import Recorder
    from marketplace.shared.bus import Bus

    if not config.database.url:
        raise ConfigError("[database].url: not set and DATABASE_URL is empty; which database?")
    configure_logging("recorder")
    _secure(config)
    recorder = Recorder(config, Bus(config.broker, producer="recorder"), config.database.url)
    asyncio.run(until_signalled(recorder.run, "recorder", config.broker))
    return 0


def _verifier(config: Config, args: argparse.Namespace) -> int:
    from marketplace.services.process import configure_logging, until_signalled
    from marketplace.services.verifier import Verifier
    from marketplace.shared.bus import Bus
    from marketplace.shared.sandbox import SandboxUnavailable

    configure_logging("verifier")
    _secure(config)
    verifier = Verifier(config, Bus(config.broker, producer="verifier"))
    try:
        asyncio.run(until_signalled(verifier.run, "verifier", config.broker))
    except SandboxUnavailable as exc:
        print(f"sale verifier: {exc}", file=sys.stderr)
        return 1
    return 0


def _replay(config: Config, args: argparse.Namespace) -> int:
    from marketplace.log import replay

    weights = load_weights(Path(args.weights)) if args.weights else None
    with contextlib.nullcontext(config) if args.from_kafka else _log(config) as config:
        if weights is None:
            log, found = _read_verified(config, args)
            found += replay.verify(log.events)
            print(log.report(found))
            return 1 if found or log.unreadable else 0
        log = asyncio.run(replay.read(config, args.from_kafka))
    print(replay.counterfactual(log.events, weights).render())
    for unreadable in log.unreadable:  # left out of the counterfactual: say so
        print(f"sale replay: skipped {unreadable}", file=sys.stderr)
    return 1 if log.unreadable else 0


def _read_verified(config: Config, args: argparse.Namespace) -> tuple[Log, list]:
    """The log, and the stored events their signatures do not vouch for, from one read
    (Postgres only: the log keeps the signatures); nothing to check without a keyring."""
    from marketplace.log import provenance, replay
    from marketplace.shared.keyfiles import trust_of

    if args.from_kafka or config.security.keyring is None:
        log = asyncio.run(replay.read(config, args.from_kafka))
        print("sale replay: signatures not checked (no [security].keyring)", file=sys.stderr)
        return log, []
    keyring = trust_of(config.security.model_copy(update={"key_dir": None})).keyring
    return asyncio.run(provenance.read_checked(config.database.url, keyring))


def _audit(config: Config, args: argparse.Namespace) -> int:
    from marketplace.log import audit

    with _log(config) as config:
        stored = asyncio.run(audit.load(config.database.url, args.task_id))
    if not stored:
        print(f"sale audit: no events recorded for task {args.task_id!r}", file=sys.stderr)
        return 1
    print(audit.render(stored), end="")
    return 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    """`sale serve`: the front door (OpenAI-compatible API, dashboard, /metrics)."""
    from marketplace.app import serve

    if not config.broker.bootstrap:
        raise ConfigError("[broker].bootstrap: not set and KAFKA_BOOTSTRAP is empty; which broker?")
    _secure(config)
    host = args.host or config.serve.host
    port = config.serve.port if args.port is None else args.port
    return asyncio.run(serve.serve(config, host, port))


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _loadtest(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.performance import loadtest

    if args.scale_out:
        from marketplace.performance import scale_out

        return scale_out.run(args.scale_out)
    load = loadtest.Load(args.auctions, args.in_flight, args.max_in_flight)
    return loadtest.run(args.agent_counts, load, args.flood, args.rate, args.trace)


def _ingest_bench(config: Config | None, args: argparse.Namespace) -> int:
    from marketplace.performance import ingest

    return ingest.run(args.events, args.profile)


def _agent(config: Config, args: argparse.Namespace) -> int:
    from agents.agent import LLMAgent
    from agents.backends import build
    from agents.runtime import AgentService
    from agents.searching import Corpora, ToolUnavailable
    from marketplace.services.process import configure_logging, until_signalled
    from marketplace.shared.bus import Bus

    settings = config.agent(args.id)
    configure_logging(f"agent.{settings.id}")
    _secure(config)
    llm = build(settings)  # loads the model before joining: a bad model fails at start
    tools = Corpora(config.corpora)
    if "search" in settings.kinds:  # and the search indexes: a corpus it cannot read too
        for corpus_id in config.corpora:
            try:
                tools.load(corpus_id)
            except ToolUnavailable as exc:
                raise UsageError(f"agent {settings.id} takes search tasks, but {exc}") from None
    if settings.cache:
        from agents.cache import CachedLLM

        url = settings.cache_url or config.database.url
        if not url:
            raise ConfigError(f"agents.{settings.id}.cache needs database.url (or DATABASE_URL)")
        llm = CachedLLM(llm, url)
    service = AgentService(
        LLMAgent(settings, llm, mechanism=config.auction.mechanism, tools=tools),
        Bus(config.broker, producer=settings.id),
        heartbeat_s=settings.heartbeat_s,
    )

    async def run(stop: asyncio.Event) -> None:
        async with service:
            await stop.wait()

    asyncio.run(until_signalled(run, f"agent.{settings.id}", config.broker))
    return 0


def _models(config: Config | None, args: argparse.Namespace) -> int:
    from agents import install

    if args.action == "calibrate":
        from marketplace.evaluation import calibrate

        tiers = list(install.MODELS) if args.tier == "all" else [args.tier]
        return calibrate.run(tiers, Path(args.out or ".sale/calibration.json"))
    if args.action == "measure":
        from marketplace.evaluation import measure
        from marketplace.evaluation.task_sets import parse_spec

        name, start, stop = parse_spec(args.tasks)
        if name != "humaneval":
            raise UsageError(f"--tasks {args.tasks}: `models measure` runs HumanEval problems")
        tiers = list(install.MODELS) if args.tier == "all" else [args.tier]
        return measure.run(tiers, f"{start}:{stop}", Path(args.out or ".sale/measure.jsonl"))
    if args.action == "install":
        for tier in install.MODELS if args.tier == "all" else [args.tier]:
            print(f"{tier}: {install.install(tier)}")
        return 0
    for spec, path, ok in install.list_models():
        print(f"{spec.tier}  {spec.name:<40} {'installed' if ok else 'missing':<9}  {path}")
    return 0


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


def _corpus_install(config: Config | None, args: argparse.Namespace) -> int:
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


def _corpus_search(config: Config | None, args: argparse.Namespace) -> int:
    tool = _search_tool(_corpus_config(args), args.id)
    hits = tool.search(args.query, k=args.k)
    if not hits:
        print(f"no hits for {args.query!r} in {args.id}")
    for n, hit in enumerate(hits, start=1):
        print(f"{n}. {hit.title}  (score {hit.score:.2f})\n   {hit.passage}\n")
    return 0


def _corpus_tasks(config: Config | None, args: argparse.Namespace) -> int:
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


def _publish(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app import publish
    from marketplace.evaluation.task_sets import parse_task_sets
    from marketplace.shared.bus import Bus

    if args.jsonl:
        with open(args.jsonl, "rb") as lines:
            postings, bad = publish.parse_jsonl(lines, config.broker.max_record_bytes)
    else:
        postings, bad = parse_task_sets(_task_sets(args)), []
    _secure(config)
    for message in bad:
        print(f"sale publish: {args.jsonl}: {message}", file=sys.stderr)
    asyncio.run(publish.publish(Bus(config.broker, producer="client"), postings))
    print(f"posted {len(postings)} tasks, {len(bad)} bad lines")
    return 1 if bad else 0


class UsageError(ValueError):
    """A flag that argparse could not judge alone; `main` says so in one line."""


def _task_sets(args: argparse.Namespace) -> list[str]:
    """`--tasks`, or the task set the older `--dataset` and `--range` name (kept hidden, as
    the README once taught them)."""
    from marketplace.evaluation.task_sets import parse_spec

    if args.dataset is None and args.range is None:
        return args.tasks or [DEFAULT_TASKS]
    if args.tasks:
        raise UsageError("--tasks replaces --dataset and --range: give only --tasks")
    spec = f"{args.dataset or 'humaneval'}:{args.range or '0:10'}"
    try:
        parse_spec(spec)
    except ValueError as exc:
        raise UsageError(f"--dataset/--range: {exc}") from None
    return [spec]


def _submit(config: Config, args: argparse.Namespace) -> int:
    """`sale submit`: one task from flags or a file; with --wait, its answer."""
    from marketplace.app import submit
    from marketplace.client import InvalidTask

    try:
        posting = submit.posting_of(
            config, args.prompt, args.file, args.kind, args.tenant, args.budget, args.id
        )
        _secure(config)
        return asyncio.run(submit.submit(config, posting, args.wait, args.timeout, args.json))
    except (submit.BadRequest, InvalidTask) as exc:
        print(f"sale submit: {exc}", file=sys.stderr)
        return 2


def _result(config: Config, args: argparse.Namespace) -> int:
    """`sale result TASK_ID`: what the log says became of the task."""
    from marketplace.app import submit

    _secure(config)
    return asyncio.run(submit.look_up(config, args.task_id, args.json))


def _submit_parsers(commands: argparse._SubParsersAction) -> None:
    """`sale submit` and `sale result` (the front door, marketplace/app/submit.py)."""
    sub = commands.add_parser("submit", help="post one task; with --wait, print its answer")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT", help="a general request, answered as text")
    source.add_argument(
        "--file", metavar="FILE", help="a task as one JSON object (a `sale publish --jsonl` line)"
    )
    sub.add_argument("--kind", choices=["general", "coding", "search"], help="the task's kind")
    sub.add_argument("--tenant", help="whose task it is (default: default)")
    sub.add_argument("--budget", type=float, help="the most the task may spend, in price units")
    sub.add_argument("--id", help="the task id (default: a fresh one)")
    sub.add_argument("--wait", action="store_true", help="wait for the answer and print it")
    sub.add_argument("--timeout", type=float, default=300.0, help="--wait: seconds (300)")
    sub.add_argument("--json", action="store_true", help="print the outcome as JSON")
    sub.set_defaults(run=_submit)
    look = commands.add_parser("result", help="print what became of a task, from the log")
    look.add_argument("task_id", metavar="TASK_ID", help="the id the task was posted with")
    look.add_argument("--json", action="store_true", help="print the outcome as JSON")
    look.set_defaults(run=_result)
    for parser_ in (sub, look):
        parser_.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)


def _keys(config: Config | None, args: argparse.Namespace) -> int:
    """`sale keys new|add|remove|list`: the keyring the config names (or --keyring, or
    <out>/keyring.toml), the private key into --out."""
    from marketplace.shared import keyfiles

    if args.keyring:
        keyring = Path(args.keyring)
    else:
        try:
            keyring = load_config(args.config_path).security.keyring
        except ConfigError:
            keyring = None
        if keyring is None:
            keyring = Path(getattr(args, "out", None) or ".sale/keys") / "keyring.toml"
    if args.keys_command == "new":
        key_id = keyfiles.new_key(args.principal, args.role, Path(args.out), keyring, args.rotate)
        print(f"key {key_id} of {args.principal} ({args.role}): {Path(args.out)}; in {keyring}")
        return 0
    if args.keys_command == "add":
        key_id = keyfiles.add_public(keyring, args.principal, args.role, args.public_key)
        print(f"key {key_id} of {args.principal} ({args.role}) added to {keyring}")
        return 0
    if args.keys_command == "remove":
        if not keyfiles.remove_public(keyring, args.key_id):
            print(f"sale keys: no key {args.key_id} in {keyring}", file=sys.stderr)
            return 1
        print(f"removed key {args.key_id} from {keyring}")
        return 0
    for key in keyfiles.read_keyring(keyring):
        print(f"{key.key_id}  {key.role:<10} {key.principal}")
    return 0


def _run(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app import job
    from marketplace.evaluation.task_sets import parse_task_sets

    postings = parse_task_sets(_task_sets(args))
    return asyncio.run(job.run_job(config, args.config_path, postings, Path(args.run_dir)))


def _report(config: Config, args: argparse.Namespace) -> int:
    import asyncpg

    from marketplace.evaluation.report import bench_report
    from marketplace.evaluation.task_sets import is_task_set, task_ids
    from marketplace.log.summary import run_report

    ids = [i for t in args.tasks for i in (task_ids(t) if is_task_set(t) else [t])] or None

    async def report(config: Config) -> str:
        if args.bench:
            await _restore(config.database.url, Path(args.archive))
            return await bench_report(config, args.train, args.test, Path(args.out))
        conn = await asyncpg.connect(config.database.url)
        try:
            prices = {a.id: a.price for a in config.agents} or None  # none: the log's own
            return await run_report(conn, ids, prices=prices)
        finally:
            await conn.close()

    with _log(config) as config:
        print(asyncio.run(report(config)))
    if args.bench:
        print(f"written to {args.out}/")
    return 0


def _weights(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import fit, matrix

    prices = {a.id: a.price for a in config.agents}
    with _log(config) as logged:
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


def _lean(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import lean_replay

    with _log(config) as logged:
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


def _with_database(config: Config, url: str) -> Config:
    return config.model_copy(update={"database": config.database.model_copy(update={"url": url})})


@contextlib.contextmanager
def _log(config: Config) -> Iterator[Config]:
    """`config` pointing at the database of the event log (`log_database`: the one `sale run`
    records into, embedded or not), once it answers: every command that reads the log or the
    benchmark's matrix goes through here."""
    from marketplace.shared.database import check_reachable, log_database

    with log_database(config.database) as url:
        asyncio.run(check_reachable(url))
        yield _with_database(config, url)


def _bench(config: Config, args: argparse.Namespace) -> int:
    import os

    from marketplace.evaluation import matrix

    if args.action == "worker":
        from marketplace.services.process import configure_logging

        configure_logging("bench.worker")
        plan = matrix.make_plan(config, args.tasks, args.plans, args.escalate)
        return 0 if asyncio.run(matrix.work(config, plan)) >= 0 else 1
    if args.action == "recount":
        return _recount(config, Path(args.archive))
    with _log(config) as config:
        url = config.database.url
        os.environ["DATABASE_URL"] = url  # for the workers, which read the same config
        if args.action == "export":
            counts = asyncio.run(_archive(url, Path(args.archive), export=True))
            print(f"{args.archive}: {counts}")
            return 0
        asyncio.run(_restore(url, Path(args.archive)))
        if args.action == "executors":
            return asyncio.run(_executors(config, args))
        if args.action == "compare":
            return _compare(config, args)
        if args.action == "live":
            from marketplace.app import job
            from marketplace.evaluation import live
            from marketplace.evaluation.task_sets import parse_task_sets

            name = live.run_name(matrix.fingerprint(config.agents), args.variant, args.order)
            run_dir = Path(args.run_dir) / name
            postings = parse_task_sets(args.tasks)
            path, run_config, todo = asyncio.run(
                live.prepare(config, args.variant, args.order, postings, run_dir)
            )
            print(f"{name}: {len(todo)} tasks")
            return asyncio.run(job.run_job(run_config, path, todo, run_dir))
        plan = matrix.make_plan(config, args.tasks, args.plans, args.escalate)
        worker = [sys.executable, "-m", "marketplace.app.cli", "--config", str(args.config_path)]
        worker += ["bench", "worker", "--tasks", *args.tasks, "--plans", *args.plans]
        worker += ["--escalate", *args.escalate] if args.escalate else []
        name = asyncio.run(matrix.build_matrix(config, worker, plan, args.workers))
    print(f"matrix {name}: complete")
    return 0


def _recount(config: Config, archive: Path) -> int:
    """Prints how often the plan-token recount would refuse the archive's honest completions."""
    from marketplace.evaluation.recount import recount

    tallies = recount(archive, _tokenizers(config))
    for model, tally in sorted(tallies.items()):
        print(tally.line(model))
    if not tallies:
        print("no archived model's vocabulary is installed (see `sale models install`)")
    return 0


def _compare(config: Config, args: argparse.Namespace) -> int:
    """The whole comparison on any split, in one command: the matrix of the training and test
    splits (drafts, escalations, plans and reviews), then every method on the test split, with
    escalations the lean replay asks for and the matrix lacks computed on the way."""
    from marketplace.evaluation import lean_replay, matrix
    from marketplace.evaluation.report import bench_report

    specs = [*args.train, *args.test]
    planned = [] if args.no_plans else specs
    plan = matrix.make_plan(config, specs, planned, args.escalate)
    worker = [sys.executable, "-m", "marketplace.app.cli", "--config", str(args.config_path)]
    worker += ["bench", "worker", "--tasks", *specs, "--plans", *planned]
    worker += ["--escalate", *args.escalate] if args.escalate else []
    asyncio.run(matrix.build_matrix(config, worker, plan, args.workers))
    out = Path(args.out or "docs/benchmark")
    while True:
        try:
            text = asyncio.run(bench_report(config, args.train, args.test, out))
            break
        except lean_replay.Missing as missing:
            print(f"computing what the lean replay needs: {missing}", flush=True)
            one = matrix.make_plan(config, [], [], [f"{missing.after}:{missing.agent_id}"])
            task = [p for p in plan.postings if p.task.task_id == missing.task_id]
            asyncio.run(matrix.work(config, dataclasses.replace(one, postings=tuple(task))))
    print(f"{text}\nwritten to {out}/")
    return 0


async def _executors(config: Config, args: argparse.Namespace) -> int:
    from marketplace.evaluation import executors
    from marketplace.evaluation.task_sets import parse_task_sets

    postings = parse_task_sets(args.tasks)
    agents = args.agents or [a.id for a in config.agents]
    if postings and all(p.task.kind == "search" for p in postings):
        return await _searchers(config, args, postings, agents)
    styles = args.styles or list(executors.STYLES)
    if bad := [s for s in styles if s not in executors.STYLES]:
        raise ConfigError(f"--styles {' '.join(bad)}: a coding shape is one of {executors.STYLES}")
    trials = []
    for agent_id in agents:
        trials += await executors.run_agent(config, agent_id, postings, styles)
        if args.with_plan:  # the plan as a hint, on the agent's configured shape
            shape = [config.agent(agent_id).executor]
            trials += await executors.run_agent(config, agent_id, postings, shape, planned=True)
    rows = executors.summarize(trials, {a: config.agent(a).price for a in agents})
    table = f"{executors.markdown(rows)}\n\nMost pass@1 per CPU-second:\n\n{executors.best(rows)}"
    print(table)
    if args.out:
        flags = " --with-plan" if args.with_plan else ""
        command = f"sale bench executors --tasks {' '.join(args.tasks)}{flags}"
        Path(args.out).write_text(f"{executors.HEADER}\nCommand: `{command}`\n\n{table}\n")
        print(f"written to {args.out}")
    return 0


async def _searchers(
    config: Config, args: argparse.Namespace, postings: list, agents: list[str]
) -> int:
    """`sale bench executors` on search tasks: the tool loop's system prompts compared."""
    from marketplace.evaluation import executors

    styles = args.styles or list(executors.SEARCHER_STYLES)
    if bad := [s for s in styles if s not in executors.SEARCHER_STYLES]:
        known = executors.SEARCHER_STYLES
        raise ConfigError(f"--styles {' '.join(bad)}: a searcher prompt is one of {known}")
    trials = []
    for agent_id in agents:
        trials += await executors.run_searcher(config, agent_id, postings, styles)
    rows = executors.summarize_search(trials, {a: config.agent(a).price for a in agents})
    _, choice = executors.best_searcher(rows)
    table = f"{executors.search_markdown(rows)}\n\nExact matches per unit of cost:\n\n{choice}"
    print(table)
    if args.out:
        command = (
            f"sale bench executors --tasks {' '.join(args.tasks)} --agents {' '.join(agents)} "
            f"--styles {' '.join(styles)}"
        )
        Path(args.out).write_text(f"{executors.SEARCH_HEADER}\nCommand: `{command}`\n\n{table}\n")
        print(f"written to {args.out}")
    return 0


async def _restore(url: str, path: Path) -> None:
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


def _contract(config: Config | None, args: argparse.Namespace) -> int:
    """`sale contract`: writes the event schemas and the AsyncAPI document into --out, or with
    --check names the files there that differ from what the code generates."""
    from marketplace.shared.contract import contract_files

    out = Path(args.out)
    files = contract_files()
    stale = sorted(
        str(path.relative_to(out))
        for path in out.glob("events/*.json")
        if str(path.relative_to(out)) not in files
    )
    differ = [
        name
        for name, text in files.items()
        if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
    ]
    if args.check:
        for name in differ:
            state = "differs from" if (out / name).is_file() else "is missing, made by"
            print(f"sale contract: {out / name} {state} the code", file=sys.stderr)
        for name in stale:
            print(f"sale contract: {out / name} is no longer made by the code", file=sys.stderr)
        if differ or stale:
            print("sale contract: regenerate with `sale contract`", file=sys.stderr)
        return 1 if differ or stale else 0
    for name in differ:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(files[name], encoding="utf-8")
    for name in stale:
        (out / name).unlink()
    print(f"sale contract: {len(differ)} written, {len(stale)} removed, in {out}")
    return 0


def signing_roles() -> tuple[str, ...]:
    from marketplace.shared.signing import ROLES

    return ROLES


DEFAULT_TASKS = "humaneval:0:10"
TASK_SET = "DATASET:START:STOP"
ARCHIVE = "archive/benchmark.jsonl.gz"  # the computed work of the benchmark, as a file


class Parser(argparse.ArgumentParser):
    """A parser whose complaint is one line, naming the command and where its help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _task_set(text: str) -> str:
    """The argparse type of every task-set flag: DATASET:START:STOP, judged before any start."""
    from marketplace.evaluation.task_sets import parse_spec

    try:
        parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _task_set_or_id(text: str) -> str:
    from marketplace.evaluation.task_sets import is_task_set

    return _task_set(text) if is_task_set(text) else text


def _span(text: str) -> str:
    """START:STOP of the hidden `--range`; the dataset's size is checked with the dataset."""
    from marketplace.evaluation.task_sets import parse_range

    try:
        parse_range(text, sys.maxsize)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sale {version('sale-marketplace')}"
    except PackageNotFoundError:
        return "sale (not installed: run from a source tree)"


def _described(parser: argparse.ArgumentParser) -> None:
    """Every command's `--help` starts by saying what it does: a command given no description
    of its own gets its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and helps.get(name):
                    sub.description = helps[name][0].upper() + helps[name][1:] + "."
                _described(sub)


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="sale", description=__doc__)
    root.add_argument("--config", help="config file (default: $SALE_CONFIG, else ./sale.toml)")
    root.add_argument("--version", action="version", version=_version())
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run broker, Postgres and the services in the foreground")
    up.add_argument(
        "--run-dir",
        help="where logs, keys and the endpoints other commands join go (default: .sale beside "
        "the config file)",
    )
    up.set_defaults(run=_up)

    topics = commands.add_parser("topics", help="list topics, partitions and consumer lag")
    topics.set_defaults(run=_topics)

    monitor = commands.add_parser("monitor", help="print one line per event on every stream")
    monitor.set_defaults(run=_monitor)

    auctioneer = commands.add_parser("auctioneer", help="run the auctioneer service")
    auctioneer.set_defaults(run=_auctioneer)

    recorder = commands.add_parser("recorder", help="record every event in Postgres")
    recorder.set_defaults(run=_recorder)

    verifier = commands.add_parser("verifier", help="verify results against the hidden checks")
    verifier.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    verifier.set_defaults(run=_verifier)

    replay = commands.add_parser(
        "replay",
        help="recompute every recorded auction decision, or re-score history",
        description="Reads the event log (the database `sale run` records into, or the topics "
        "with --from-kafka) and recomputes every auction decision from it (--verify, exit 1 "
        "listing what differs), or re-scores history under other weights (--weights).",
    )
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--verify", action="store_true", help="exit 1 listing decisions that differ")
    what.add_argument("--weights", metavar="FILE", help="TOML with [auction.weights]' keys")
    replay.add_argument(
        "--from-kafka", action="store_true", help="read the streams from offset 0, not Postgres"
    )
    replay.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    replay.set_defaults(run=_replay)

    keys = commands.add_parser("keys", help="make, list and retire the signing keys")
    keys.set_defaults(run=_keys, needs_config=False)
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser("new", help="a private key file and its public key appended")
    new.add_argument("--principal", required=True, help="auctioneer, verifier, client, an agent id")
    new.add_argument("--role", required=True, choices=signing_roles(), help="what the key may sign")
    new.add_argument("--out", required=True, metavar="DIR", help="where the private key goes")
    new.add_argument("--rotate", action="store_true", help="replace the principal's key")
    add = keys_commands.add_parser(
        "add", help="register someone else's public key (an agent that made its own key)"
    )
    add.add_argument("--principal", required=True, help="whose key: e.g. the agent's id")
    add.add_argument("--role", required=True, choices=signing_roles(), help="what it may sign")
    add.add_argument(
        "--public-key", required=True, metavar="BASE64", help="the raw Ed25519 public key, base64"
    )
    remove = keys_commands.add_parser("remove", help="retire a key (the end of a rotation)")
    remove.add_argument("key_id", metavar="KEY_ID", help="the key's id, as `sale keys list` shows")
    keys_commands.add_parser("list", help="the keys in the keyring")
    for sub in keys_commands.choices.values():
        sub.add_argument("--keyring", metavar="FILE", help="default: [security].keyring")
        sub.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)

    contract = commands.add_parser(
        "contract", help="write the event schemas and AsyncAPI document (docs/contract/)"
    )
    contract.add_argument("--out", default="docs/contract", help="where (default: docs/contract)")
    contract.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the files that differ"
    )
    contract.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    contract.set_defaults(run=_contract, needs_config=False)

    audit = commands.add_parser("audit", help="print the whole story of one task")
    audit.add_argument("task_id", metavar="TASK_ID", help="e.g. HumanEval-0")
    audit.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    audit.set_defaults(run=_audit)

    serve = commands.add_parser(
        "serve", help="the front door: OpenAI-compatible API, operator's dashboard, /metrics"
    )
    serve.add_argument("--host", help="address to listen on (default: [serve].host, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default: [serve].port, 8080)")
    serve.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

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
    load.set_defaults(run=_loadtest, needs_config=False)

    bench = commands.add_parser(
        "ingest-bench", help="recorder and replay events/s, next to the raw Kafka consume rate"
    )
    bench.add_argument("--events", type=int, default=20000, help="events to publish and record")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="run the recorder and the replay under cProfile; print where their time goes",
    )
    bench.set_defaults(run=_ingest_bench, needs_config=False)

    post = commands.add_parser("publish", help="post tasks from a dataset or a JSONL file")
    source = post.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--tasks",
        nargs="+",
        type=_task_set,
        metavar=TASK_SET,
        help="dataset problems, e.g. humaneval:0:10 or mbpp:0:5",
    )
    source.add_argument("--jsonl", help="one task per line (see marketplace/app/publish.py)")
    _old_task_flags(post, source)
    post.set_defaults(run=_publish)
    _submit_parsers(commands)

    agent = commands.add_parser("agent", help="run one agent of [[agents]]")
    agent.add_argument("--id", required=True, help="the agent's id in [[agents]]")
    agent.set_defaults(run=_agent)

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
    models.add_argument(
        "--tasks",
        type=_task_set,
        default="humaneval:0:20",
        metavar=TASK_SET,
        help="measure: the HumanEval problems (default: humaneval:0:20)",
    )
    models.add_argument(
        "--out",
        help="measure: its resumable log (default: .sale/measure.jsonl); calibrate: the record "
        "(default: .sale/calibration.json)",
    )
    models.set_defaults(run=_models, needs_config=False)

    corpus = commands.add_parser(
        "corpus", help="the deep-search corpora: build an index, search one, the FanOutQA tasks"
    )
    corpus.set_defaults(needs_config=False)
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    corpus_install = corpus_commands.add_parser(
        "install", help="fetch a corpus and build its search index (once; a changed source again)"
    )
    corpus_install.add_argument(
        "id", nargs="?", metavar="ID", help="a corpus id of [corpora] (default: every one)"
    )
    corpus_install.set_defaults(run=_corpus_install)
    corpus_search = corpus_commands.add_parser(
        "search", help="search a corpus as an agent's search tool does, and print the hits"
    )
    corpus_search.add_argument("id", metavar="ID", help="a corpus id of [corpora], e.g. wiki")
    corpus_search.add_argument("query", metavar="QUERY", help="words to search for")
    corpus_search.add_argument("-k", type=int, default=5, help="hits at most (default: 5)")
    corpus_search.set_defaults(run=_corpus_search)
    corpus_tasks = corpus_commands.add_parser(
        "tasks", help="how many FanOutQA questions the wiki corpus answers, by kind and split"
    )
    corpus_tasks.set_defaults(run=_corpus_tasks)
    for sub in corpus_commands.choices.values():
        sub.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)

    run = commands.add_parser(
        "run", help="the main job: the stack, a set of tasks through real auctions, a report"
    )
    run.add_argument(
        "--tasks",
        nargs="+",
        type=_task_set,
        metavar=TASK_SET,
        help=f"dataset problems, in order (default: {DEFAULT_TASKS})",
    )
    _old_task_flags(run, run)
    run.add_argument("--run-dir", default=".sale", help="where logs and keys go (default: .sale)")
    run.set_defaults(run=_run)

    report = commands.add_parser("report", help="markdown tables of what the log says happened")
    report.add_argument(
        "--tasks",
        nargs="+",
        type=_task_set_or_id,
        default=[],
        metavar="TASKS",
        help="only these: task sets (humaneval:0:10) or task ids (HumanEval-3); default: all",
    )
    report.add_argument("--bench", action="store_true", help="the benchmark's methods and plots")
    report.add_argument(
        "--train",
        nargs="+",
        type=_task_set,
        default=["mbpp:0:100"],
        metavar=TASK_SET,
        help="bench: the training split (default: mbpp:0:100)",
    )
    report.add_argument(
        "--test",
        nargs="+",
        type=_task_set,
        default=["humaneval:0:164"],
        metavar=TASK_SET,
        help="bench: the evaluation split (default: humaneval:0:164)",
    )
    report.add_argument(
        "--out", default="docs/benchmark", help="bench: where README.md and PNGs go"
    )
    report.add_argument("--archive", default=ARCHIVE, help="bench: loaded first if it exists")
    report.set_defaults(run=_report)

    weights = commands.add_parser("weights", help="fit the scoring weights on the matrix")
    weights.add_argument("action", choices=["fit"], help="fit: on the matrix of --tasks")
    weights.add_argument(
        "--tasks",
        nargs="+",
        type=_task_set,
        default=["mbpp:0:100"],
        metavar=TASK_SET,
        help="the training split (default: mbpp:0:100)",
    )
    weights.add_argument("--lambda", dest="lam", type=float, default=0.1, help="cost's weight")
    weights.add_argument("--seed", type=int, default=0, help="the fit's random seed")
    weights.add_argument("--out", default="weights.toml", help="the weights file to write")
    weights.set_defaults(run=_weights)

    lean = commands.add_parser("lean", help="fit the lean auction's priors and settings")
    lean.add_argument("action", choices=["fit"], help="fit: priors and settings")
    lean.add_argument(
        "--train",
        nargs="+",
        type=_task_set,
        default=["mbpp:0:100"],
        metavar=TASK_SET,
        help="the priors come from here (default: mbpp:0:100)",
    )
    lean.add_argument(
        "--dev",
        nargs="+",
        type=_task_set,
        default=["mbpp:100:200"],
        metavar=TASK_SET,
        help="the settings are chosen here (default: mbpp:100:200)",
    )
    lean.add_argument("--out", default="weights.toml", help="the weights file to update")
    lean.set_defaults(run=_lean)

    bench_cmd = commands.add_parser(
        "bench",
        help="the benchmark: choose the executor, fill the matrix, run live, compare every method",
    )
    bench_cmd.add_argument(
        "action",
        choices=["matrix", "live", "export", "worker", "executors", "compare", "recount"],
        help="executors: compare prompt shapes; matrix: every agent on every task; live: a run "
        "through the marketplace; export: the archive; compare: all of it on a split; worker: "
        "one matrix process (started by matrix); recount: the plan-token recount on the archive",
    )
    bench_cmd.add_argument(
        "--train",
        nargs="+",
        type=_task_set,
        default=["mbpp:0:100"],
        metavar=TASK_SET,
        help="compare: the training split",
    )
    bench_cmd.add_argument(
        "--test",
        nargs="+",
        type=_task_set,
        default=["humaneval:0:164"],
        metavar=TASK_SET,
        help="compare: the split compared on",
    )
    bench_cmd.add_argument("--agents", nargs="+", help="executors: these agents (default: all)")
    bench_cmd.add_argument(
        "--styles",
        nargs="+",
        help="executors: the prompt shapes to compare (coding: chat complete continue; search: "
        "the searcher prompts plain short example; default: all of the tasks' kind)",
    )
    bench_cmd.add_argument(
        "--out", help="executors: a markdown file for the table; compare: a folder (docs/benchmark)"
    )
    bench_cmd.add_argument(
        "--with-plan",
        action="store_true",
        help="executors: also the agent's configured shape with its own plan as a hint",
    )
    bench_cmd.add_argument(
        "--tasks",
        nargs="+",
        type=_task_set,
        default=["mbpp:0:100", "humaneval:0:164"],
        metavar=TASK_SET,
        help="task sets DATASET:START:STOP (default: the training and evaluation splits)",
    )
    bench_cmd.add_argument(
        "--plans",
        nargs="*",
        type=_task_set,
        metavar=TASK_SET,
        default=["mbpp:0:100", "humaneval:0:164"],
        help="matrix: task sets that also get every agent's plan and reviews (the paper's auction)",
    )
    bench_cmd.add_argument(
        "--no-plans",
        action="store_true",
        help="compare: no plans nor reviews (SALE-paper is left out of the table, which says so)",
    )
    bench_cmd.add_argument(
        "--escalate",
        nargs="*",
        default=[],
        metavar="CHEAPER:DEARER",
        help="matrix: agent pairs whose escalation drafts to compute (e.g. M:L)",
    )
    bench_cmd.add_argument("--workers", type=int, default=2, help="model processes at once")
    bench_cmd.add_argument(
        "--variant",
        default="full",
        choices=["lean", "full", "no-memory"],  # marketplace.evaluation.live.VARIANTS
        help="live: the lean auction, or the paper's with or without memory (default: full)",
    )
    bench_cmd.add_argument("--order", type=int, default=0, help="live: 0 = dataset order")
    bench_cmd.add_argument("--run-dir", default=".sale/bench", help="live: logs and config")
    bench_cmd.add_argument(
        "--archive",
        default=ARCHIVE,
        help="the computed work as a file: loaded first if it exists; `export` writes it",
    )
    bench_cmd.set_defaults(run=_bench)

    for sub in (
        weights,
        lean,
        run,
        report,
        bench_cmd,
        up,
        topics,
        monitor,
        auctioneer,
        recorder,
        load,
        bench,
        agent,
        models,
        post,
    ):
        sub.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    _described(root)
    return root


def _old_task_flags(command: argparse.ArgumentParser, group: argparse._ActionsContainer) -> None:
    """`--dataset NAME --range A:B`, the spelling before `--tasks`, hidden but still taken."""
    group.add_argument("--dataset", help=argparse.SUPPRESS)  # checked with --range, by name
    command.add_argument("--range", type=_span, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.config_path = config_path(args.config_sub or args.config)
    # aiokafka logs each failed connection; a command whose logging nobody configured says
    # it once itself (a service's configure_logging shows them all)
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    config = None
    try:
        if getattr(args, "needs_config", True):
            # `up` and `run` start a stack of their own; the rest join a running one
            config = load_config(args.config_path, join=args.command not in ("up", "run"))
        return args.run(config, args)
    except ConfigError as exc:
        print(f"sale: bad config: {exc}", file=sys.stderr)
        return 2
    except MissingExtra as exc:
        print(f"sale: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sale {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if (message := foreseen(exc, config)) is None:
            raise  # a bug: its traceback is what a report of it needs
        print(f"sale {args.command}: {message}", file=sys.stderr)
        return 2


def foreseen(exc: Exception, config: Config | None) -> str | None:
    """The one line for an error a user causes or can fix (a flag, no database, an empty log,
    no broker, a missing file); None for anything else, which is a bug."""
    import asyncpg
    from aiokafka.errors import KafkaConnectionError

    from marketplace.log.replay import NO_LOG, LogUnavailable
    from marketplace.shared.admin import BrokerUnreachable
    from marketplace.shared.database import DatabaseUnreachable, reason

    if isinstance(exc, (UsageError, LogUnavailable, DatabaseUnreachable)):
        return str(exc)
    matrix = sys.modules.get("marketplace.evaluation.matrix")  # raised it only if loaded
    if matrix is not None and isinstance(exc, matrix.EmptySplit):
        return str(exc)
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"{NO_LOG} ({exc})"
    if isinstance(exc, (KafkaConnectionError, BrokerUnreachable)):
        if config is not None and not config.broker.bootstrap:
            return (
                "no broker: [broker].bootstrap is not set and KAFKA_BOOTSTRAP is empty "
                "(`sale up` starts one and prints its address)"
            )
        where = f" at {config.broker.bootstrap}" if config is not None else ""
        return f"no broker answers{where} (is `sale up` running there, and KAFKA_BOOTSTRAP right?)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError)):
        return f"cannot connect: {reason(exc)}"
    return None


if __name__ == "__main__":
    sys.exit(main())
