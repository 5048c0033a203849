from __future__ import annotations

from pathlib import Path

import pytest

from daemon.shared.config import (
    DEFAULT_HTTP_PORT,
    LogFormat,
    load_settings,
    mask_url,
    read_systemd_environment,
)
from daemon.shared.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        systemd = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        if name.startswith("TRIAGED_") or name in systemd:
            monkeypatch.delenv(name)


def test_defaults_serve_loopback_8080_on_the_embedded_database():
    settings = load_settings()
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == DEFAULT_HTTP_PORT == 8080
    assert settings.embedded_database
    assert settings.log_format is LogFormat.AUTO


def test_bad_values_name_each_field(monkeypatch):
    monkeypatch.setenv("TRIAGED_HTTP_PORT", "abc")
    monkeypatch.setenv("TRIAGED_JOB_GRACE_SECONDS", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("TRIAGED_HTTP_PORT: ") and "'abc'" in problems[0]
    assert problems[1].startswith("TRIAGED_JOB_GRACE_SECONDS: ")


def test_a_bad_database_url_never_echoes_the_url(monkeypatch):
    monkeypatch.setenv("TRIAGED_DATABASE_URL", "mysql://admin:hunter2@db/x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [
        "TRIAGED_DATABASE_URL: must be a postgresql:// URL or a libpq key=value string"
    ]
    assert "hunter2" not in str(caught.value)


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.http_port = 1  # type: ignore[misc]


def test_env_file_is_read_and_the_environment_wins(monkeypatch, tmp_path: Path):
    env_file = tmp_path / "triaged.env"
    env_file.write_text("TRIAGED_HTTP_PORT=9000\nTRIAGED_WORKER_CONCURRENCY=3\n")
    monkeypatch.setenv("TRIAGED_ENV_FILE", str(env_file))
    monkeypatch.setenv("TRIAGED_HTTP_PORT", "9100")
    settings = load_settings()
    assert settings.http_port == 9100
    assert settings.worker_concurrency == 3


def test_missing_env_file_is_a_config_error(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TRIAGED_ENV_FILE", str(tmp_path / "nope.env"))
    with pytest.raises(ConfigError, match="TRIAGED_ENV_FILE: no such file"):
        load_settings()


def test_pool_bounds_are_checked_together(monkeypatch):
    monkeypatch.setenv("TRIAGED_DB_POOL_MIN_SIZE", "20")
    monkeypatch.setenv("TRIAGED_DB_POOL_MAX_SIZE", "5")
    with pytest.raises(ConfigError, match="MIN_SIZE must not exceed"):
        load_settings()


def test_public_view_masks_the_database_password(monkeypatch):
    monkeypatch.setenv("TRIAGED_DATABASE_URL", "postgresql://app:s3cret@db.internal:5432/triaged")
    view = load_settings().public_view()
    assert view["TRIAGED_DATABASE_URL"] == "postgresql://app:***@db.internal:5432/triaged"
    assert "s3cret" not in repr(view)
    assert view["TRIAGED_HTTP_PORT"] == "8080"


def test_mask_url_keeps_urls_without_password():
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"


def test_systemd_watchdog_only_for_our_pid(monkeypatch):
    import os

    monkeypatch.setenv("NOTIFY_SOCKET", "@triaged-test")
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    assert read_systemd_environment().watchdog_interval == 2.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert read_systemd_environment().watchdog_interval is None


def test_key_value_conninfo_is_accepted_and_masked(monkeypatch):
    monkeypatch.setenv("TRIAGED_DATABASE_URL", "host=db dbname=t user=app password='s3 cret'")
    settings = load_settings()
    assert not settings.embedded_database
    shown = settings.public_view()["TRIAGED_DATABASE_URL"]
    assert shown == "host=db dbname=t user=app password=***"


def test_garbage_conninfo_is_refused(monkeypatch):
    monkeypatch.setenv("TRIAGED_DATABASE_URL", "this is not a conninfo")
    with pytest.raises(ConfigError, match="TRIAGED_DATABASE_URL"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@127.0.0.1:1/db?password=s3cret",
            "postgresql://u@127.0.0.1:1/db?password=***",
        ),
        ("postgresql://u:s3cret@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql://u:s3cret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
    ],
)
def test_mask_url_handles_query_passwords_multi_host_and_ipv6(url, shown):
    assert mask_url(url) == shown


def test_step_concurrency_from_one_variable(monkeypatch):
    monkeypatch.setenv("TRIAGED_INGEST_CONCURRENCY", "analyze=4, fetch=16")
    assert load_settings().ingest_concurrency == {"analyze": 4, "fetch": 16}
    monkeypatch.setenv("TRIAGED_INGEST_CONCURRENCY", "teleport=2")
    with pytest.raises(ConfigError, match=r"TRIAGED_INGEST_CONCURRENCY: .*unknown step"):
        load_settings()
    monkeypatch.setenv("TRIAGED_INGEST_CONCURRENCY", "analyze")
    with pytest.raises(ConfigError, match="step=n pairs"):
        load_settings()


def test_openai_analyzer_needs_a_server_and_a_model(monkeypatch):
    monkeypatch.setenv("TRIAGED_ANALYZER", "openai")
    with pytest.raises(ConfigError, match="TRIAGED_LLM_BASE_URL and TRIAGED_LLM_MODEL"):
        load_settings()
    monkeypatch.setenv("TRIAGED_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("TRIAGED_LLM_MODEL", "m")
    monkeypatch.setenv("TRIAGED_LLM_API_KEY", "sk-do-not-show")
    settings = load_settings()
    assert settings.llm_api_key is not None
    assert "sk-do-not-show" not in str(settings.public_view())
