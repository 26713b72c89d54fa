"""A running `sale up` is joined by the commands beside it: what the environment leaves unset
comes from its endpoints file, and a file whose `sale up` is gone is ignored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from marketplace.shared import endpoints
from marketplace.shared.config import load_config

STACK = {
    "KAFKA_BOOTSTRAP": "127.0.0.1:9999",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/stack",
    "SALE_KEYRING": "/somewhere/keyring.toml",
}


def config_beside_a_stack(tmp_path: Path) -> Path:
    config = tmp_path / "sale.toml"
    config.write_text("[broker]\npartitions = 2\n")
    (tmp_path / ".sale").mkdir()
    return config


def test_a_running_stack_fills_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    config = config_beside_a_stack(tmp_path)
    with endpoints.published(tmp_path / ".sale", STACK) as path:
        joined = load_config(config, {"DATABASE_URL": "postgresql://mine"})
        assert path.exists()
    assert joined.broker.bootstrap == "127.0.0.1:9999"
    assert joined.database.url == "postgresql://mine"  # the environment wins
    assert joined.security.keyring == Path("/somewhere/keyring.toml")
    assert not path.exists()  # gone with the stack
    assert load_config(config, {}).broker.bootstrap == ""


def test_a_stack_that_is_gone_is_not_joined_and_up_joins_nothing(tmp_path: Path) -> None:
    config = config_beside_a_stack(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = {"pid": int(dead.stdout), **STACK}
    (tmp_path / ".sale" / endpoints.FILE).write_text(json.dumps(stale))
    assert load_config(config, {}).broker.bootstrap == ""
    with endpoints.published(tmp_path / ".sale", STACK):
        assert load_config(config, {}, join=False).broker.bootstrap == ""


def test_a_stack_deletes_only_its_own_endpoints_file(tmp_path: Path) -> None:
    """The file a stack leaves on stopping is deleted only while it is still its own."""
    config_beside_a_stack(tmp_path)
    with endpoints.published(tmp_path / ".sale", STACK) as path:
        path.write_text(json.dumps({"pid": 1, **STACK}))  # another stack's now
    assert json.loads(path.read_text())["pid"] == 1
