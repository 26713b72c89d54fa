"""The broker's own wall: TLS and SASL settings of `[broker]` as the Kafka clients take them.

Signatures (`shared.signing`) make a forged event useless; broker authentication and ACLs keep
a stranger from publishing (or reading the hidden checks) at all. Secrets are never in the
config file: it names the environment variables that hold them.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.helpers import create_ssl_context

from marketplace.shared.config import BrokerConfig, ConfigError


def _ssl(config: BrokerConfig) -> ssl.SSLContext | None:
    if "SSL" not in config.security_protocol:
        return None
    if config.ssl_cafile is not None and not config.ssl_cafile.is_file():
        raise ConfigError(f"[broker].ssl_cafile: {config.ssl_cafile}: no such file")
    return create_ssl_context(cafile=str(config.ssl_cafile) if config.ssl_cafile else None)


def _credentials(config: BrokerConfig, env: Mapping[str, str]) -> tuple[str, str]:
    found = []
    for field in ("sasl_username_env", "sasl_password_env"):
        var = getattr(config, field)
        if not env.get(var):
            raise ConfigError(f"[broker].{field}: ${var} is not set ({config.sasl_mechanism})")
        found.append(env[var])
    return found[0], found[1]


def client_options(config: BrokerConfig, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (consumer, producer, admin); none for
    PLAINTEXT, so a local broker needs nothing."""
    if config.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": config.security_protocol}
    if (context := _ssl(config)) is not None:
        options["ssl_context"] = context
    if config.security_protocol.startswith("SASL"):
        username, password = _credentials(config, env)
        options |= {
            "sasl_mechanism": config.sasl_mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return options
