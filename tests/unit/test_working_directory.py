"""Every command and example means the same files from any working directory: the config is
`--config`, else $SALE_CONFIG, else the nearest sale.toml in the working directory or above it
(as git finds its repository), and every default path is relative to the config's folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from marketplace.app.cli.arguments import resolve_defaults
from marketplace.app.cli.dispatch import parser
from marketplace.shared import endpoints
from marketplace.shared.config import config_path, load_config
from marketplace.shared.keyfiles import new_key

ROOT = Path(__file__).resolve().parents[2]
UNSET = ("SALE_CONFIG", "KAFKA_BOOTSTRAP", "DATABASE_URL", "SALE_KEYRING", "SALE_KEY_DIR")


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A project folder with its sale.toml, and a folder two levels below it."""
    folder = tmp_path / "project"
    below = folder / "src" / "deep"
    below.mkdir(parents=True)
    (folder / "sale.toml").write_text("[broker]\npartitions = 2\n")
    return folder, below


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user who exported nothing."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_the_nearest_sale_toml_here_or_above_is_the_config(tmp_path: Path) -> None:
    folder, below = project(tmp_path)
    assert config_path(None, env={}, cwd=below) == folder / "sale.toml"
    assert config_path(None, env={}, cwd=folder) == folder / "sale.toml"
    (below.parent / "sale.toml").write_text("")
    assert config_path(None, env={}, cwd=below) == below.parent / "sale.toml"  # the nearest
    assert config_path(None, env={"SALE_CONFIG": "b.toml"}, cwd=below) == Path("b.toml")
    assert config_path("a.toml", env={"SALE_CONFIG": "b.toml"}, cwd=below) == Path("a.toml")


def test_with_none_found_the_fallback_else_sale_toml_which_is_named_missing(
    tmp_path: Path,
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    assert config_path(None, env={}, cwd=alone) == Path("sale.toml")
    assert config_path(None, env={}, cwd=alone, fallback=ROOT / "sale.toml") == ROOT / "sale.toml"


def test_load_config_without_a_path_reads_the_one_found(tmp_path: Path, monkeypatch) -> None:
    folder, below = project(tmp_path)
    monkeypatch.chdir(below)
    config = load_config(env={})
    assert config.broker.partitions == 2
    assert config.database.data_dir == folder / ".sale" / "postgres"


def test_default_paths_of_the_commands_are_beside_the_config(tmp_path: Path, monkeypatch) -> None:
    """`sale run` in a subfolder keeps its run, keys and endpoints in the project's `.sale`,
    where `sale up` would, and the benchmark's archive is the project's."""
    folder, below = project(tmp_path)
    monkeypatch.chdir(below)

    def parsed(*argv: str) -> dict:
        args = parser().parse_args(list(argv))
        args.config_path = config_path(args.config_sub or args.config, env={})
        resolve_defaults(args)
        return vars(args)

    assert parsed("run")["run_dir"] == str(folder / ".sale")
    assert parsed("report")["archive"] == str(folder / "archive" / "benchmark.jsonl.gz")
    assert parsed("report")["out"] == str(folder / "docs" / "benchmark")
    assert parsed("bench", "compare", "--test", "mbpp:0:2")["run_dir"] == str(
        folder / ".sale" / "bench"
    )
    assert parsed("run", "--run-dir", "mine")["run_dir"] == "mine"  # typed: where they are


def test_a_command_in_a_subfolder_joins_the_projects_running_stack(tmp_path: Path) -> None:
    """A second terminal, `cd src/deep`, `sale keys list`: the project's config is found, and
    through it the running `sale up` (its endpoints file) names the keyring."""
    folder, below = project(tmp_path)
    (folder / ".sale").mkdir()
    keyring = tmp_path / "stack-keys" / "keyring.toml"
    key_id = new_key("client", "client", keyring.parent, keyring)
    with endpoints.published(folder / ".sale", {"SALE_KEYRING": str(keyring)}):
        listed = subprocess.run(
            [sys.executable, "-m", "marketplace.app.cli", "keys", "list"],
            cwd=below,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == [key_id, "client", "client"]


def test_with_no_config_anywhere_the_error_says_where_it_looked(tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    topics = subprocess.run(
        [sys.executable, "-m", "marketplace.app.cli", "topics"],
        cwd=alone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert topics.returncode == 2
    assert topics.stderr == (
        f"sale: bad config: no sale.toml in {alone} or any folder above it "
        "(pass --config or set SALE_CONFIG)\n"
    )


def test_an_example_takes_config_and_help_from_any_directory(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "submit_coding.py"), "--help"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--config" in helped.stdout


def test_no_file_under_examples_is_found_as_a_config() -> None:
    """The full example config is not named sale.toml: a command typed in examples/ means the
    checkout's config, not the docker deployment's."""
    assert not list((ROOT / "examples").rglob("sale.toml"))
    assert config_path(None, env={}, cwd=ROOT / "examples" / "tasks") == ROOT / "sale.toml"
