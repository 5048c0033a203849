"""Retention's pure rules and its configuration: periods per kind, dependency order,
batch shrinking, checkpoint signatures, the purge's daily time and the settings' checks."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from daemon.composition import retention_config
from daemon.modules.audit import checkpoint_mac
from daemon.modules.retention import RUN_ORDER, BatchLimits, Kind, Periods, smaller_batch
from daemon.shared.config import Settings, load_settings
from daemon.shared.errors import ConfigError

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("TRIAGED_"):
            monkeypatch.delenv(name)


def test_cases_go_before_documents_before_history_before_the_audit_log():
    order = [kind.value for kind in RUN_ORDER]
    assert order.index("resolved_cases") < order.index("completed_documents")
    documents = {"completed_documents", "failed_documents", "duplicate_documents"}
    assert set(order[1:4]) == documents
    assert order[-2:] == ["document_history", "audit_events"]


def test_each_kind_has_its_own_period_and_none_may_be_zero():
    periods = Periods(
        completed_documents=1 * DAY, failed_documents=2 * DAY, duplicate_documents=3 * DAY,
        resolved_cases=4 * DAY, document_history=5 * DAY, audit_events=6 * DAY,
    )  # fmt: skip
    assert [periods.of(kind) / DAY for kind in Kind] == [4, 1, 2, 3, 5, 6]
    with pytest.raises(ValueError, match="audit_events"):
        Periods(
            completed_documents=DAY, failed_documents=DAY, duplicate_documents=DAY,
            resolved_cases=DAY, document_history=DAY, audit_events=timedelta(0),
        )  # fmt: skip


def test_a_batch_out_of_time_is_halved_down_to_one_row():
    sizes = [500]
    while (smaller := smaller_batch(sizes[-1])) is not None:
        sizes.append(smaller)
    assert sizes == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    with pytest.raises(ValueError):
        BatchLimits(rows=0)


def test_checkpoint_signatures_cover_position_event_and_hash():
    key = b"k" * 32
    mac = checkpoint_mac(key, last_seq=10, last_event_id=12, last_hash=bytes(32))
    assert len(mac) == 32
    assert mac == checkpoint_mac(key, last_seq=10, last_event_id=12, last_hash=bytes(32))
    assert mac != checkpoint_mac(key, last_seq=11, last_event_id=12, last_hash=bytes(32))
    assert mac != checkpoint_mac(key, last_seq=10, last_event_id=13, last_hash=bytes(32))
    assert mac != checkpoint_mac(key, last_seq=10, last_event_id=12, last_hash=b"\1" * 32)
    assert mac != checkpoint_mac(b"j" * 32, last_seq=10, last_event_id=12, last_hash=bytes(32))


def test_the_settings_give_every_period_the_daily_time_and_the_key():
    config = retention_config(
        Settings(
            document_retention_days=10,
            retention_failed_documents_days=2.5,
            retention_purge_time="22:05",
            retention_purge_timezone="Europe/Paris",
            retention_batch_rows=20,
            audit_checkpoint_key="0123456789abcdef",
        )
    )
    assert config.periods.completed_documents == 10 * DAY
    assert config.periods.failed_documents == timedelta(days=2.5)
    assert config.periods.audit_events == 730 * DAY  # the default
    assert (config.schedule.cron, config.schedule.timezone) == ("5 22 * * *", "Europe/Paris")
    assert config.schedule.queue == "retention.purge"
    assert config.batch == BatchLimits(rows=20, seconds=5.0)
    assert config.checkpoint_key == b"0123456789abcdef"
    assert "0123456789abcdef" not in repr(config)
    assert retention_config(Settings()).checkpoint_key is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRIAGED_RETENTION_PURGE_TIME", "25:00"),
        ("TRIAGED_RETENTION_PURGE_TIME", "3:30"),
        ("TRIAGED_RETENTION_FAILED_DOCUMENTS_DAYS", "0"),
        ("TRIAGED_AUDIT_CHECKPOINT_KEY", "short"),
    ],
)
def test_bad_retention_settings_name_their_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith(variable + ": ")


def test_an_unknown_time_zone_is_a_configuration_error():
    with pytest.raises(ConfigError) as caught:
        retention_config(Settings(retention_purge_timezone="Mars/Olympus"))
    assert caught.value.problems[0].startswith("TRIAGED_RETENTION_PURGE_TIMEZONE: ")


def test_the_checkpoint_key_is_masked_in_the_configuration_view():
    view = Settings(audit_checkpoint_key="0123456789abcdef").public_view()
    assert view["TRIAGED_AUDIT_CHECKPOINT_KEY"] == "********"
