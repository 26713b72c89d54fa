"""The broker's TLS and SASL settings as the Kafka clients take them, and bad ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.shared.config import BrokerConfig, ConfigError, parse_config
from marketplace.shared.kafka_auth import client_options

ENV = {"KAFKA_USERNAME": "auctioneer", "KAFKA_PASSWORD": "s3cret"}


def test_plaintext_needs_nothing() -> None:
    assert client_options(BrokerConfig()) == {}


def test_sasl_ssl_reaches_every_client_with_credentials_from_the_environment() -> None:
    config = BrokerConfig(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512")
    options = client_options(config, ENV)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == tuple(ENV.values())
    assert options["ssl_context"] is not None


def test_bad_broker_security_fails_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker: .*sasl_mechanism is required"):
        parse_config({"broker": {"security_protocol": "SASL_SSL"}})
    sasl = BrokerConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    with pytest.raises(ConfigError, match=r"\[broker\]\.sasl_password_env: \$KAFKA_PASSWORD"):
        client_options(sasl, {"KAFKA_USERNAME": "u"})
    tls = BrokerConfig(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"\[broker\]\.ssl_cafile: .*no such file"):
        client_options(tls)
