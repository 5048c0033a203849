"""Start the real ``triaged`` process for end-to-end tests and watch it from outside."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """Pause this (test) process's garbage collector while it times the daemon.

    The client's own pauses count in the latencies it measures: with a whole session's
    tests collected, a full collection of the test process's heap takes tens of
    milliseconds, and one landing in a measured request was charged to the daemon.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    """The test process's environment minus any TRIAGED_ setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGED_")}
    env.update({"TRIAGED_LOG_FORMAT": "json", "TRIAGED_LOG_LEVEL": "INFO"})
    env.update(overrides)
    return env


class Triaged:
    """One ``triaged`` process: ``argv`` after the interpreter, output kept in a file."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        args: list[str],
        env: dict[str, str],
        launcher: list[str] | None = None,
    ) -> None:
        self.port = int(env.get("TRIAGED_HTTP_PORT", "0")) or None
        self.log_path = tmp_path / f"triaged-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        command = launcher or [sys.executable, "-m", "daemon"]
        self.proc = subprocess.Popen(
            [*command, *args],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        records = []
        for line in self.output().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"triaged still running after {timeout}s:\n{self.output()}")
            await trio.sleep(0.01)
        return self.proc.returncode

    async def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds until ``/readyz`` answered 200."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"triaged exited with {self.proc.returncode}:\n{self.output()}"
                    )
                try:
                    response = await client.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        raise AssertionError(f"/readyz not 200 within {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


async def analyst_key(url: str, password_file: Path, role: str = "analyst") -> str:
    """Log in as the generated first admin and create an API key with ``role``."""
    password = (await trio.Path(password_file).read_text()).strip()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "admin@triaged.localhost", "password": password}
        )
        assert login.status_code == 200, login.text
        created = await client.post(
            "/api/v1/api-keys",
            json={"name": f"e2e {role}", "role": role},
            headers={"Authorization": f"Bearer {login.json()['token']}"},
        )
        assert created.status_code == 201, created.text
    return str(created.json()["key"])
