"""docker-compose.yml, read as the deployment it describes: every service health-checked, the
sandbox allowed where model-written code runs and nowhere else, the agents asking the model
server by its service name for models it serves, the front door published, no benchmark data
and no private key where the sandbox could show it. (No Docker engine runs here: CI validates
the file with `docker-compose config -q`; the images are not built by the tests.)"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from agents import install
from marketplace.app import health
from marketplace.shared.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
MODEL_SERVER = "model-server"
CONFIG_IN_CONTAINER = "/etc/sale/sale.toml"
# What the sandbox binds into a run's root from the container (marketplace/shared/sandbox.py).
SHOWN_TO_SANDBOXED_CODE = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SANDBOX_OPTIONS = {"seccomp=unconfined", "apparmor=unconfined"}


def sale_command(service: dict) -> list[str]:
    """The `sale` arguments after the global --config, e.g. ["agent", "--id", "small"]."""
    command = list(service.get("command", []))
    if command[:2] == ["--config", CONFIG_IN_CONTAINER]:
        return command[2:]
    return command


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume; a named volume's source is its name."""
    found = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        found.append((source, target))
    return found


def mounted_config(service: dict) -> Config:
    (source,) = [s for s, t in mounts(service) if t == CONFIG_IN_CONTAINER]
    return load_config(ROOT / source, env={})


def runs(command: str) -> dict[str, dict]:
    return {name: s for name, s in SERVICES.items() if sale_command(s)[:1] == [command]}


def model_server_config() -> dict:
    (source,) = [s for s, t in mounts(SERVICES[MODEL_SERVER]) if t == "/etc/sale/model-server.json"]
    return json.loads((ROOT / source).read_text())


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check(name: str) -> None:
    check = SERVICES[name].get("healthcheck", {})
    assert not check.get("disable", False)
    assert check.get("test", [None])[0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_our_health_checks_name_checks_that_exist(name: str) -> None:
    """A typo would make a container unhealthy for good; the parser refuses one here."""
    test = SERVICES[name]["healthcheck"]["test"]
    if test[1:4] != ["python", "-m", "marketplace.app.health"]:
        return
    args = health.parser().parse_args(test[4:])
    assert args.checks or args.http
    assert set(args.checks) <= set(health.CHECKS)


def test_the_verifier_and_the_agents_may_use_the_sandbox_and_run_as_no_one_special() -> None:
    sandboxed = {**runs("verifier"), **runs("agent")}
    assert set(sandboxed) >= {"verifier", "agent-small", "agent-large"}
    for name, service in sandboxed.items():
        options = set(service.get("security_opt", []))
        assert options >= SANDBOX_OPTIONS | {"no-new-privileges:true"}, name
        assert "ALL" in service.get("cap_drop", []), name
        assert not service.get("cap_add") and not service.get("privileged"), name
        assert service.get("user") in (None, "sale", "10001"), name  # the image's: not root
        healthcheck = SERVICES[name]["healthcheck"]["test"]
        assert "sandbox" in healthcheck, f"{name}: its health check must try the sandbox"
    assert re.search(r"^USER sale$", DOCKERFILE.split("AS service")[1], re.M)


def test_no_other_service_has_the_sandbox_relaxations() -> None:
    sandboxed = {**runs("verifier"), **runs("agent")}
    for name, service in SERVICES.items():
        if name not in sandboxed:
            assert not SANDBOX_OPTIONS & set(service.get("security_opt", [])), name
            assert not service.get("cap_add") and not service.get("privileged"), name


def test_the_agents_ask_the_model_server_by_service_name_for_models_it_serves() -> None:
    served = model_server_config()
    aliases = {m["model_alias"] for m in served["models"]}
    agents = runs("agent")
    assert agents
    for name, service in agents.items():
        agent_id = sale_command(service)[sale_command(service).index("--id") + 1]
        settings = mounted_config(service).agent(agent_id)
        url = urlsplit(settings.endpoint or "")
        assert settings.backend == "openai", name
        assert (url.hostname, url.port, url.path) == (MODEL_SERVER, served["port"], "/v1"), name
        # a name the server does not serve is answered by its first model, silently
        assert settings.model in aliases, name
        assert service["depends_on"][MODEL_SERVER] == {"condition": "service_healthy"}, name


def test_every_agent_of_the_config_runs_in_a_service() -> None:
    config = mounted_config(SERVICES["verifier"])
    ids = {sale_command(s)[sale_command(s).index("--id") + 1] for s in runs("agent").values()}
    assert ids == {a.id for a in config.agents}


def test_the_model_server_serves_the_installed_models_by_their_names() -> None:
    served = model_server_config()
    assert served["host"] == "0.0.0.0"
    expected = {spec.name: f"/models/{spec.name}.gguf" for spec in install.MODELS.values()}
    assert {m["model_alias"]: m["model"] for m in served["models"]} == expected
    assert all(m["logits_all"] for m in served["models"])  # the agents ask for logprobs
    assert ("models", "/models") in mounts(SERVICES[MODEL_SERVER])
    stage = DOCKERFILE.split("AS model-server")[1].split("\nFROM ")[0]
    assert "ENV SALE_MODELS_DIR=/models" in stage
    assert (
        "sale models install &&" in stage and "--config_file /etc/sale/model-server.json" in stage
    )


def test_the_model_server_file_is_what_llama_cpp_reads() -> None:
    settings = pytest.importorskip("llama_cpp.server.settings")
    text = (ROOT / "examples" / "model-server.json").read_text()
    parsed = settings.ConfigFileSettings.model_validate_json(text)
    aliases = [m["model_alias"] for m in json.loads(text)["models"]]
    assert [m.model_alias for m in parsed.models] == aliases


def test_the_front_door_is_published_and_checked_on_its_port() -> None:
    (service,) = runs("serve").values()
    command = sale_command(service)
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"{port}:{port}" in service["ports"]
    # /health answers without a key (the door's /v1/models wants one once [serve].keys is set)
    assert f"http://127.0.0.1:{port}/health" in service["healthcheck"]["test"]


def test_no_service_mounts_benchmark_data_or_shows_keys_to_the_sandbox() -> None:
    named = set(COMPOSE.get("volumes", {}))
    config_files = {"./examples/sale.example.toml", "./examples/model-server.json"}
    for name, service in SERVICES.items():
        for source, target in mounts(service):
            if source in named:
                continue
            assert source in config_files | {"./keys"}, f"{name} mounts {source}"
            if source == "./keys":
                shown = any(
                    PurePosixPath(target).is_relative_to(p) for p in SHOWN_TO_SANDBOXED_CODE
                )
                assert not shown, f"{name}: the sandbox would show its private keys at {target}"
                env = service["environment"]
                assert env["SALE_KEY_DIR"] == target and env["SALE_KEYRING"].startswith(target)


def test_the_service_image_installs_no_benchmark_extra() -> None:
    stage = DOCKERFILE.split("AS service")[1]
    (extras,) = re.findall(r"^ARG SALE_EXTRAS=(\S*)$", stage, re.M)
    assert {"bench", "local", "models", "embedded", "test"}.isdisjoint(extras.split(","))
    assert 'pip install ".[$SALE_EXTRAS]"' in stage
    for name, service in SERVICES.items():
        target = service.get("build", {}).get("target")
        if name == MODEL_SERVER:
            assert target == "model-server"
        elif "build" in service:
            assert target == "service", name
