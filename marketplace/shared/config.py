"""`sale.toml`: one file configures the broker, the database, the auction and the agents.

Connection settings may be overridden from the environment (KAFKA_BOOTSTRAP, DATABASE_URL)
so the same file serves a laptop and a cluster. Anything wrong fails at load time with a
message naming the field, before a single service starts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from marketplace.shared.errors import UserError
from schemas.codec import describe
from schemas.events import MAX_EXCERPT, MAX_TOOL_STEPS, Id, Price, TaskKind, Weights

CONFIG_ENV = "SALE_CONFIG"
CONFIG_FILE = "sale.toml"  # the name a config is found by (`config_path`)
ExecutorStyle = Literal["chat", "complete", "continue"]
SearcherStyle = Literal["plain", "short", "example"]  # agents.prompts.SEARCHERS (docs/search.md)
DEFAULT_SEARCHER: SearcherStyle = "short"  # chosen on fanoutqa-dev (docs/search.md)
SERVICES = (
    "monitor",
    "auctioneer",
    "recorder",
    "verifier",
)  # grows as services land; `sale up` starts those listed in [stack]


class ConfigError(UserError, ValueError):
    """The configuration cannot be used; the message names the file and the field."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


S = TypeVar("S", bound=Section)


# A dead letter's largest record: the excerpt and key base64-encoded, a reason of escaped
# characters and the envelope (tests/unit/test_bounds.py measures it).
MIN_RECORD_BYTES = 131_072
# `[auction] uncheckable`: who answers a task nothing can check (an agent's id besides)
UNCHECKABLE_RULES = ("likeliest", "cheapest", "dearest")


class BrokerConfig(Section):
    bootstrap: str = Field(default="", description="host:port[,host:port]; empty: start Tansu")
    topic_prefix: str = Field(default="sale.", pattern=r"^[A-Za-z0-9._\-]*$", max_length=100)
    partitions: int = Field(default=4, ge=1, le=1024)
    # The inbox (docs/delivery.md): an agent reads one partition of it and skips by header what
    # is addressed to the other agents there, so more partitions mean fewer neighbours to skip.
    # Partitions cannot be added later without moving agents to other partitions (the
    # partition is the hash of the id modulo the count), so the default is generous.
    inbox_partitions: int = Field(default=64, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=16)
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    session_timeout_ms: int = Field(default=6_000, ge=1_000, le=300_000)
    heartbeat_interval_ms: int = Field(default=500, ge=100, le=60_000)
    # How long one event's handling may take before the group gives the member's partitions
    # away: an agent's model call runs inside its handler, minutes long on slow cores.
    max_poll_interval_ms: int = Field(default=3_600_000, ge=10_000, le=86_400_000)
    # The producer sends requests of at most 1 MiB and a broker takes messages of about 1 MB
    # by default (message.max.bytes): a record must fit with its key, headers and batch framing
    # around it, hence the ceiling. The floor leaves room for the largest dead letter.
    max_record_bytes: int = Field(
        default=1_000_000,
        ge=MIN_RECORD_BYTES,
        le=1_000_000,
        description="the largest event record published or accepted; larger ones are refused",
    )
    dead_letter_excerpt_bytes: int = Field(
        default=4_096,
        ge=0,
        le=MAX_EXCERPT,
        description="how much of a bad record a dead letter keeps",
    )
    trace: bool = Field(
        default=False,
        description="stamp each record with the timings of the one it answers (a benchmark's)",
    )
    # The broker's own authentication (marketplace.shared.kafka_auth); secrets come from the
    # environment variables named here, never from this file.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username_env: str = Field(default="KAFKA_USERNAME", min_length=1, max_length=100)
    sasl_password_env: str = Field(default="KAFKA_PASSWORD", min_length=1, max_length=100)
    ssl_cafile: Path | None = Field(default=None, description="CA bundle; empty: the system's")

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> BrokerConfig:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism is required with {self.security_protocol}")
        return self


class DatabaseConfig(Section):
    url: str = Field(default="", description="postgresql://...; empty: embedded Postgres")
    data_dir: Path = Field(default=Path(".sale/postgres"), description="embedded Postgres files")


class PriorConfig(Section):
    """What the training split says of one agent's drafts (`marketplace.core.lean_policy.Prior`)."""

    examples_pass: float = Field(ge=0, le=1)
    right_if_pass: float = Field(ge=0, le=1)
    right_if_fail: float = Field(ge=0, le=1)
    cost: float = Field(ge=0, allow_inf_nan=False)


class LeanConfig(Section):
    """The lean auction's settings (`marketplace.core.lean_policy`); `sale lean fit` writes them."""

    value: float = Field(
        default=1.0, ge=0, allow_inf_nan=False, description="a right answer's worth, in price units"
    )
    neighbours: int = Field(default=10, ge=0, le=1000, description="past drafts read per agent")
    strength: float = Field(default=4.0, ge=0, allow_inf_nan=False, description="prior, in drafts")
    min_similarity: float = Field(
        default=0.0, ge=-1, le=1, description="past drafts of less similar tasks are not read"
    )
    feedback: bool = Field(
        default=False, description="a dearer agent fixes a cheaper one's failing draft"
    )
    priors: dict[Id, PriorConfig] = Field(
        default_factory=dict,
        description="by agent id; an agent without one gets an agnostic prior "
        "(marketplace.core.lean_auction.prior_for)",
    )


class AuctionConfig(Section):
    mechanism: Literal["lean", "paper"] = Field(
        default="lean", description="lean: calls for drafts with a stopping rule; paper: SALE"
    )
    lean: LeanConfig = LeanConfig()
    uncheckable: Id = Field(
        default="likeliest",
        description="lean: who answers a task nothing can check (a general request, a search, "
        "a coding task without examples): likeliest (right, by the memory; ties to the "
        "dearer), cheapest, dearest, or an agent's id",
    )
    bid_window_s: float = Field(default=120.0, gt=0, le=3600)
    jury_window_s: float = Field(default=120.0, gt=0, le=3600)
    refine_window_s: float = Field(default=120.0, gt=0, le=3600)
    heartbeat_ttl_s: float = Field(default=30.0, gt=0, le=3600)
    memory_k: int = Field(default=8, ge=0, le=100)
    weights: Weights = Weights()
    weights_file: Path | None = Field(
        default=None,
        description="TOML with [auction.weights] and/or [auction.lean] (`sale weights fit` and "
        "`sale lean fit` write them); replaces those sections",
    )


class AdmissionConfig(Section):
    """Backpressure: how many auctions one auctioneer keeps open at once. Further tasks wait in
    order on the `tasks` topic, so a flood queues instead of opening auctions nobody can bid in."""

    open_per_agent: int = Field(
        default=2, ge=1, le=1000, description="open auctions per live agent (at least one agent)"
    )
    max_open: int = Field(default=64, ge=1, le=100_000, description="open auctions at most")


class AgentConfig(Section):
    id: Id
    backend: Literal["llama_cpp", "openai", "scripted"]
    model: str = Field(min_length=1, max_length=128)
    input_price: float = Field(ge=0, allow_inf_nan=False, description="per million prompt tokens")
    output_price: float = Field(
        ge=0, allow_inf_nan=False, description="per million generated tokens"
    )
    cached_input_price: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="per million prompt tokens the "
        "backend already holds evaluated (llama.cpp keeps a prefix); empty: input_price",
    )
    kinds: list[TaskKind] = Field(
        default=["coding", "general"],
        min_length=1,
        description="the task kinds it takes: coding (a function), general (a prompt answered "
        "as text), search (a question answered with a search tool: agents.searching)",
    )
    path: Path | None = Field(default=None, description="llama_cpp: the .gguf file")
    tier: Literal["S", "M", "L"] | None = Field(
        default=None, description="llama_cpp: a model installed by `sale models install`"
    )
    endpoint: str | None = Field(default=None, description="openai: the base URL")
    api_key_env: str | None = Field(default=None, description="openai: env var with the key")
    max_plan_tokens: int = Field(default=200, ge=8, le=4096)
    executor: ExecutorStyle = Field(
        default="continue", description="the executor's prompt shape (docs/executors.md)"
    )
    execute_rounds: int = Field(
        default=1, ge=1, le=20, description="calls per execution: 1 writes, each more fixes"
    )
    execute_max_tokens: int = Field(default=512, ge=16, le=8192, description="per completion")
    execute_token_budget: int = Field(default=4000, ge=16, description="for all rounds")
    search_max_steps: int = Field(
        default=6,
        ge=1,
        le=MAX_TOOL_STEPS,
        description="search: model calls per task, each one action; the last must answer",
    )
    search_token_budget: int = Field(
        default=16_000,
        ge=256,
        description="search: prompt and generated tokens of all the loop's calls together",
    )
    searcher: SearcherStyle = Field(
        default=DEFAULT_SEARCHER,
        description="search: the tool loop's system prompt (agents.prompts.SEARCHERS), chosen "
        "on the FanOutQA development split (docs/search.md)",
    )
    heartbeat_s: float = Field(default=5.0, gt=0, le=600)
    context_tokens: int = Field(default=4096, ge=512, le=32768, description="llama_cpp: n_ctx")
    cache: bool = Field(
        default=False, description="reuse completions kept in Postgres (benchmarks; agents.cache)"
    )
    cache_url: str = Field(default="", description="where completions are kept; empty: database")
    # A call or award older than this is refused by its age, so the ids of those answered need
    # keeping only this long (agents.handled). No answer older than an hour can count: the
    # auction's windows are at most an hour, and the verifier decides a task that has no
    # result an hour after its checks (verifier.WAIT_S).
    replay_window_s: float = Field(
        default=3600.0,
        ge=1,
        le=86_400,
        description="calls and awards older than this (by their signed occurred_at) are "
        "refused; the ids answered are kept this long, so a replay is answered never",
    )
    state_dir: Path | None = Field(
        default=Path(".sale/agents"),
        description="where the agent keeps the ids of the events it answered "
        "(<id>.handled), across restarts; empty: in memory only",
    )

    @property
    def price(self) -> Price:
        return Price(
            input=self.input_price, output=self.output_price, cached_input=self.cached_input_price
        )

    @model_validator(mode="after")
    def _backend_has_its_settings(self) -> AgentConfig:
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("endpoint is required for the openai backend")
        if self.backend == "llama_cpp" and (self.path is None) == (self.tier is None):
            raise ValueError("the llama_cpp backend needs exactly one of path and tier")
        return self


class SecurityConfig(Section):
    """Who may produce what (`marketplace.shared.signing`): the keyring of public keys and where
    this host's private keys are. `sale up` makes the keys it needs on first start."""

    require_signatures: bool = Field(
        default=True, description="refuse (dead-letter) unsigned and mis-signed records"
    )
    keyring: Path | None = Field(default=None, description="TOML of public keys ($SALE_KEYRING)")
    key_dir: Path | None = Field(
        default=None, description="this host's private keys, <principal>.key ($SALE_KEY_DIR)"
    )


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]


class ServeConfig(Section):
    """`sale serve`: the front door's address, how long a request may wait for its task, and
    who may call it. Keys are secrets, so the file names the environment variable holding each
    tenant's key, never the key (`keys`)."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8080, ge=1, le=65_535)
    timeout_s: float = Field(
        default=300.0, gt=0, le=86_400, description="a request's wait for its task's outcome"
    )
    keys: dict[Id, EnvName] = Field(
        default_factory=dict,
        description="tenant → environment variable holding its API key; empty: an open door",
    )


class TenantConfig(Section):
    """One tenant's limit (`[tenants.<name>]`): a task over what is left of it is refused."""

    budget: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="the most the tenant's tasks may spend together, in price units (the log's "
        "spend: bids, jury, refinement, execution); empty: no limit",
    )


class StackConfig(Section):
    services: list[Literal[SERVICES]] = Field(default_factory=list)  # type: ignore[valid-type]


WIKI = "wiki"
CorpusSource = Literal["wiki"] | Path


class Config(Section):
    broker: BrokerConfig = BrokerConfig()
    database: DatabaseConfig = DatabaseConfig()
    auction: AuctionConfig = AuctionConfig()
    admission: AdmissionConfig = AdmissionConfig()
    agents: list[AgentConfig] = Field(default_factory=list)
    tenants: dict[Id, TenantConfig] = Field(
        default_factory=dict, description="by tenant name (`TaskPosted.tenant`); others: no limit"
    )
    stack: StackConfig = StackConfig()
    security: SecurityConfig = SecurityConfig()
    serve: ServeConfig = ServeConfig()
    corpora: dict[Id, CorpusSource] = Field(
        default_factory=lambda: {WIKI: WIKI},
        description='corpus id (a search task\'s inputs.corpus) → "wiki" (the offline Wikipedia '
        'corpus) or a folder of .txt/.md files; "wiki" is there unless redefined',
    )

    @field_validator("corpora")
    @classmethod
    def _wiki_always_there(cls, corpora: dict[str, CorpusSource]) -> dict[str, CorpusSource]:
        return {WIKI: WIKI, **corpora}

    @model_validator(mode="after")
    def _agent_ids_unique(self) -> Config:
        ids = [agent.id for agent in self.agents]
        if dupes := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"agent ids must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _uncheckable_names_a_rule_or_an_agent(self) -> Config:
        """A value that is no rule must be an agent of `[[agents]]` (a typo of "likeliest"
        would otherwise route nothing); with no `[[agents]]` (agents configured elsewhere),
        any agent id is taken."""
        choice = self.auction.uncheckable
        ids = [agent.id for agent in self.agents]
        if choice not in UNCHECKABLE_RULES and ids and choice not in ids:
            raise ValueError(
                f"auction.uncheckable: {choice!r} is neither likeliest, cheapest, dearest "
                f"nor an agent of [[agents]] ({', '.join(ids)})"
            )
        return self

    def tenant_budget(self, tenant: str) -> float | None:
        """The tenant's budget; None: no limit."""
        settings = self.tenants.get(tenant)
        return settings.budget if settings is not None else None

    def agent(self, agent_id: str) -> AgentConfig:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        raise ConfigError(f"no agent with id {agent_id!r} in [[agents]]")

    def corpus(self, corpus_id: str) -> CorpusSource:
        """Where the corpus of this id comes from: "wiki", or a folder."""
        try:
            return self.corpora[corpus_id]
        except KeyError:
            known = ", ".join(self.corpora)
            raise ConfigError(f"no corpus {corpus_id!r} in [corpora] (known: {known})") from None


ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP": ("broker", "bootstrap"),
    "DATABASE_URL": ("database", "url"),
    "SALE_KEYRING": ("security", "keyring"),
    "SALE_KEY_DIR": ("security", "key_dir"),
}


def unset(section: str, key: str) -> str:
    """The one wording for a connection setting that neither the file nor its environment
    variable gives, e.g. "[broker].bootstrap is not set and KAFKA_BOOTSTRAP is empty"."""
    env = next(name for name, where in ENV_OVERRIDES.items() if where == (section, key))
    return f"[{section}].{key} is not set and {env} is empty"


def config_path(
    explicit: str | Path | None,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
    fallback: Path | None = None,
) -> Path:
    """The file to read: the flag, else $SALE_CONFIG, else the nearest `sale.toml` in the
    working directory or a folder above it (found as git finds its repository, so a command
    typed in a subfolder means the project's config), else `fallback`, else ./sale.toml (which
    `load_config` then reports missing). A path the user gives is relative to where they are."""
    if given := explicit or env.get(CONFIG_ENV):
        return Path(given)
    return find_config(cwd or Path.cwd()) or fallback or Path(CONFIG_FILE)


def find_config(start: Path) -> Path | None:
    """The nearest `sale.toml` in `start` or a folder above it; None when there is none."""
    start = start.absolute()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    return None


def load_config(
    path: Path | None = None, env: Mapping[str, str] = os.environ, join: bool = True
) -> Config:
    """The config in `path` (none: the one `sale` would find, `config_path`), connection
    settings overridden from `env`; with `join`, a running `sale up` of this config supplies
    those `env` leaves unset (`shared.endpoints`)."""
    path = path if path is not None else config_path(None, env)
    if join:
        from marketplace.shared import endpoints

        env = endpoints.joined(env, path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        hint = f"pass --config or set {CONFIG_ENV}"
        if path == Path(CONFIG_FILE):  # none found where the command runs, nor above it
            where = f"no {CONFIG_FILE} in {Path.cwd()} or any folder above it"
            raise ConfigError(f"{where} ({hint})") from None
        raise ConfigError(f"{path}: no such config file ({hint})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, env, source=str(path), base=path.parent)


def parse_config(
    data: dict,
    env: Mapping[str, str] = os.environ,
    source: str = "config",
    base: Path | None = None,
) -> Config:
    """`base`: the config file's folder, which the file's relative paths are relative to (none:
    the current directory's)."""
    from_env: set[tuple[str, ...]] = set()
    for var, (section, field) in ENV_OVERRIDES.items():
        if env.get(var):
            data = {**data, section: {**data.get(section, {}), field: env[var]}}
            from_env.add((section, field))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from None
    if base is not None:
        config = relative_to(config, base.absolute(), keep=from_env)
    for corpus_id, folder in config.corpora.items():
        if isinstance(folder, Path) and not folder.is_dir():
            raise ConfigError(f"{source}: corpora.{corpus_id}: {folder} is not a folder")
    if (path := config.auction.weights_file) is not None:
        auction = config.auction.model_copy(update=load_fitted(path))
        config = config.model_copy(update={"auction": auction})
    return config


def relative_to(
    section: S, base: Path, keep: Set[tuple[str, ...]] = frozenset(), at: tuple[str, ...] = ()
) -> S:
    """`section` with every relative path in it (any field, at any depth, defaults included)
    made absolute against `base`: a config file means the same files from whichever directory
    a command runs, so `sale report` elsewhere finds the database `sale run` made. Paths at
    `keep` came from the environment and stay relative to the current directory."""
    update: dict[str, object] = {}
    for name in type(section).model_fields:
        value, where = getattr(section, name), (*at, name)
        if where in keep:
            continue
        if isinstance(value, Path):
            update[name] = _absolute(value, base)
        elif isinstance(value, dict) and any(isinstance(v, Path) for v in value.values()):
            update[name] = {
                k: _absolute(v, base) if isinstance(v, Path) else v for k, v in value.items()
            }
        elif isinstance(value, Section):
            update[name] = relative_to(value, base, keep, where)
        elif isinstance(value, list) and all(isinstance(v, Section) for v in value):
            update[name] = [relative_to(v, base, keep, where) for v in value]
    return section.model_copy(update=update)


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def to_toml(config: Config) -> str:
    """The config as TOML that `load_config` reads back to an equal config (settings that are
    at their defaults are left out), for a program that writes a config for its children."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    lines: list[str] = []
    for section, table in data.items():
        if section == "agents":
            for agent in table:
                lines += ["", "[[agents]]", *(f"{k} = {_toml(v)}" for k, v in agent.items())]
        else:
            lines += _table([section], table)
    return "\n".join(lines).strip() + "\n"


def _table(path: list[str], table: dict) -> list[str]:
    scalars = [f"{k} = {_toml(v)}" for k, v in table.items() if not isinstance(v, dict)]
    lines = ["", f"[{'.'.join(path)}]", *scalars]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _table([*path, key], value)
    return lines


def _toml(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # strings, numbers and lists of them read the same in TOML


def load_fitted(path: Path) -> dict[str, Weights | LeanConfig]:
    """The fitted sections a weights file holds: `weights` and/or `lean`."""
    data = _read_toml(path, "weights file")
    auction = data.get("auction", {})
    fitted: dict[str, Weights | LeanConfig] = {}
    if "weights" in auction or "lean" not in auction:
        fitted["weights"] = load_weights(path)
    if "lean" in auction:
        try:
            fitted["lean"] = LeanConfig.model_validate(auction["lean"])
        except ValidationError as exc:
            raise ConfigError(f"{path}: auction.lean: {describe(exc)}") from None
    return fitted


def _read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_weights(path: Path) -> Weights:
    """Weights from a TOML file with the keys of [auction.weights], or from a whole sale.toml."""
    data = _read_toml(path, "weights file")
    table = data.get("auction", {}).get("weights", {}) if "auction" in data else data
    try:
        return Weights.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(exc)}") from None
