"""The containers' health checks (`python -m marketplace.app.health`): one line per check, exit 0
only if every check passed. The broker and database checks against real ones are in
tests/integration/test_health.py."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.app.health import main
from marketplace.shared.local_broker import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v1/models" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_http_check_passes_on_2xx_and_fails_otherwise(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--http", f"{server}/v1/models"]) == 0
    assert capsys.readouterr().out == f"http: ok: {server}/v1/models answers 200\n"
    assert main(["--http", f"{server}/v1/models", "--http", f"{server}/other"]) == 1
    assert capsys.readouterr().out.splitlines()[1] == f"http: FAILED: {server}/other answers 503"


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/models"
    assert main(["--http", url]) == 1
    assert capsys.readouterr().out.startswith(f"http: FAILED: {url} does not answer")


def test_an_http_check_reads_no_config(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The model server's container has no sale.toml."""
    assert main(["--config", "/nonexistent/sale.toml", "--http", f"{server}/v1/models"]) == 0


def test_the_sandbox_check_runs_code_in_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sale.toml"
    config.write_text("")
    assert main(["--config", str(config), "sandbox"]) == 0
    assert capsys.readouterr().out == "sandbox: ok: runs code isolated\n"


def test_a_check_without_its_setting_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = tmp_path / "sale.toml"
    config.write_text("")
    assert main(["--config", str(config), "broker", "database"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "broker: FAILED: [broker].bootstrap is not set and KAFKA_BOOTSTRAP is empty",
        "database: FAILED: [database].url is not set and DATABASE_URL is empty",
    ]


def test_a_broker_that_does_not_answer_is_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sale.toml"
    config.write_text(f'[broker]\nbootstrap = "127.0.0.1:{free_port()}"\n')
    assert main(["--config", str(config), "broker"]) == 1
    assert capsys.readouterr().out.startswith("broker: FAILED: no broker answers at 127.0.0.1:")


def test_a_bad_config_is_one_failed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sale.toml"
    config.write_text("[broker]\npartitions = 0\n")
    assert main(["--config", str(config), "broker"]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("broker: FAILED: ") and "broker.partitions" in line


def test_unknown_checks_and_no_checks_are_usage_errors() -> None:
    with pytest.raises(SystemExit):
        main(["kafka"])
    with pytest.raises(SystemExit):
        main([])
