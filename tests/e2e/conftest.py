from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.process import Triaged, base_env, free_port


@pytest.fixture
def start_triaged(tmp_path: Path, database_url: str) -> Iterator:
    """Start ``triaged`` processes on a fresh database; all are killed at teardown."""
    started: list[Triaged] = []

    def start(*args: str, launcher: list[str] | None = None, **env: str) -> Triaged:
        settings = {
            "TRIAGED_DATABASE_URL": database_url,
            "TRIAGED_HTTP_PORT": str(free_port()),
            "TRIAGED_DATA_DIR": str(tmp_path / "data"),
        }
        settings.update(env)
        process = Triaged(
            tmp_path, args=list(args or ["serve"]), env=base_env(**settings), launcher=launcher
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
