"""Configuration: the example loads, env overrides connections, bad input names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.shared.config import ConfigError, config_path, load_config, parse_config
from schemas.events import Price

EXAMPLE = Path(__file__).parents[2] / "examples" / "sale.example.toml"
PRICED = {"input_price": 1, "output_price": 2}


def test_the_example_config_loads_with_documented_values() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.broker.topic_prefix == "sale."
    assert config.auction.memory_k == 8
    assert [a.id for a in config.agents] == ["small", "large"]
    assert config.agent("large").endpoint == "http://model-server:8080/v1"  # docker-compose.yml
    assert (config.broker.max_record_bytes, config.broker.dead_letter_excerpt_bytes) == (
        1_000_000,
        4096,
    )


def test_the_example_prices_each_direction_and_documents_the_new_settings() -> None:
    config = load_config(EXAMPLE, env={})
    small, large = config.agents
    assert small.price == Price(input=0.02, output=0.05)  # held tokens at the input price
    assert large.price == Price(input=0.12, output=0.36, cached_input=0.06)
    assert (small.executor, small.execute_rounds) == ("complete", 1)
    assert config.auction.mechanism == "lean"
    assert config.auction.lean.priors["small"].right_if_pass == 0.8
    assert (config.admission.open_per_agent, config.admission.max_open) == (2, 64)


def test_an_agent_has_no_single_price_any_more() -> None:
    old = {"id": "a", "backend": "scripted", "model": "m", "price_per_mtok": 1}
    with pytest.raises(ConfigError, match=r"agents\[0\].price_per_mtok: Extra inputs"):
        parse_config({"agents": [{**old, **PRICED}]}, env={})
    read_only = {"id": "a", "backend": "scripted", "model": "m", "input_price": 1}
    with pytest.raises(ConfigError, match=r"agents\[0\].output_price: Field required"):
        parse_config({"agents": [read_only]}, env={})


def test_an_empty_config_gives_the_defaults() -> None:
    config = parse_config({}, env={})
    assert config.broker.bootstrap == ""
    assert config.database.url == ""
    assert config.agents == []


def test_environment_overrides_connection_settings() -> None:
    env = {"KAFKA_BOOTSTRAP": "kafka:9092", "DATABASE_URL": "postgresql://db/sale"}
    config = load_config(EXAMPLE, env=env)
    assert config.broker.bootstrap == "kafka:9092"
    assert config.database.url == "postgresql://db/sale"
    assert config.broker.partitions == 4  # the rest of the section is kept


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"broker": {"partitions": 0}}, "broker.partitions: Input should be greater than"),
        ({"brokers": {}}, "brokers: Extra inputs are not permitted"),
        ({"auction": {"weights": {"cost": "high"}}}, "auction.weights.cost: Input should be"),
        ({"auction": {"bid_window_s": -1}}, "auction.bid_window_s"),
        (
            {"agents": [{"id": "a", "backend": "gpt", "model": "m", **PRICED}]},
            r"agents\[0\].backend: Input should be 'llama_cpp', 'openai' or 'scripted'",
        ),
        (
            {"agents": [{"id": "a", "backend": "scripted", "model": "m"}]},
            r"agents\[0\].input_price: Field required",
        ),
        (
            {"agents": [{"id": "a", "backend": "openai", "model": "m", **PRICED}]},
            "endpoint is required for the openai backend",
        ),
        (
            {"agents": [{"id": "a", "backend": "scripted", "model": "m", **PRICED}] * 2},
            "agent ids must be unique, repeated: a",
        ),
        ({"stack": {"services": ["monitor", "toaster"]}}, r"stack.services\[1\]: Input should be"),
        (
            {"broker": {"heartbeat_interval_ms": 3000, "session_timeout_ms": 6000}},
            "heartbeat_interval_ms must be at most a third",
        ),
        (
            {"broker": {"max_record_bytes": 2_000_000}},  # over the producer's request limit
            "broker.max_record_bytes: Input should be less than or equal to 1000000",
        ),
        (
            {"broker": {"max_record_bytes": 4096}},  # a dead letter would not fit
            "broker.max_record_bytes: Input should be greater than or equal to 131072",
        ),
        (
            {"broker": {"dead_letter_excerpt_bytes": 1_000_000}},
            "broker.dead_letter_excerpt_bytes: Input should be less than or equal to 65536",
        ),
        ({"admission": {"open_per_agent": 0}}, "admission.open_per_agent: Input should be"),
        ({"admission": {"max_open": "many"}}, "admission.max_open: Input should be"),
        ({"admission": {"queue": 5}}, "admission.queue: Extra inputs are not permitted"),
    ],
)
def test_bad_config_fails_naming_the_field(data: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        parse_config(data, env={})


def test_missing_and_malformed_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[broker\nbootstrap = 1")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(broken)


def test_config_path_prefers_the_flag_then_the_environment(tmp_path: Path) -> None:
    assert config_path("a.toml", env={"SALE_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path(None, env={"SALE_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path(None, env={}, cwd=tmp_path) == Path("sale.toml")  # none found


def test_paths_in_a_config_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "weights.toml").write_text("[auction.weights]\ncost = 0.5\n")
    (folder / "sale.toml").write_text(
        '[broker]\nssl_cafile = "ca.pem"\n'
        '[database]\ndata_dir = "db"\n'
        '[auction]\nweights_file = "weights.toml"\n'
        '[security]\nkeyring = "keys/keyring.toml"\nkey_dir = "/etc/sale/keys"\n'
        '[[agents]]\nid = "a"\nbackend = "llama_cpp"\nmodel = "m"\npath = "models/a.gguf"\n'
        "input_price = 1\noutput_price = 1\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths must not follow the current directory
    config = load_config(Path("project/sale.toml"), env={})
    assert config.broker.ssl_cafile == folder / "ca.pem"
    assert config.database.data_dir == folder / "db"
    assert config.auction.weights_file == folder / "weights.toml"
    assert config.auction.weights.cost == 0.5
    assert config.security.keyring == folder / "keys" / "keyring.toml"
    assert config.security.key_dir == Path("/etc/sale/keys")  # absolute: as written
    assert config.agent("a").path == folder / "models" / "a.gguf"


def test_a_default_path_is_relative_to_the_config_file_too(tmp_path: Path) -> None:
    (tmp_path / "sale.toml").write_text("")
    config = load_config(tmp_path / "sale.toml", env={})
    assert config.database.data_dir == tmp_path / ".sale" / "postgres"


def test_a_path_from_the_environment_stays_relative_to_the_current_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "sale.toml").write_text('[security]\nkey_dir = "keys"\n')
    config = load_config(tmp_path / "sale.toml", env={"SALE_KEYRING": "ring.toml"})
    assert config.security.keyring == Path("ring.toml")
    assert config.security.key_dir == tmp_path / "keys"


AGENTS = [
    {"id": i, "backend": "scripted", "model": "m", "input_price": 1, "output_price": p}
    for i, p in (("S", 1), ("L", 5))
]


@pytest.mark.parametrize("rule", ["likeliest", "cheapest", "dearest", "S"])
def test_uncheckable_tasks_go_to_a_rule_or_an_agent(rule: str) -> None:
    config = parse_config({"auction": {"uncheckable": rule}, "agents": AGENTS}, env={})
    assert config.auction.uncheckable == rule
    assert parse_config({}, env={}).auction.uncheckable == "likeliest"  # the default


@pytest.mark.parametrize("value", ["likliest", "X", "no spaces"])
def test_an_uncheckable_setting_that_names_nothing_fails_naming_the_field(value: str) -> None:
    with pytest.raises(ConfigError, match=r"auction\.uncheckable"):
        parse_config({"auction": {"uncheckable": value}, "agents": AGENTS}, env={})
