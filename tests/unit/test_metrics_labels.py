"""Every label of every metric comes from a closed set (defect 4 of issue 12)."""

from __future__ import annotations

import pytest

from daemon.api.http_metrics import HttpMetrics
from daemon.queue.metrics import QUEUE_LABEL_LIMIT, QueueMetrics
from daemon.shared.metrics import (
    DEFAULT_LABEL_LIMIT,
    Counter,
    Gauge,
    Histogram,
    Label,
    Registry,
    exposition,
)


def test_a_closed_label_collapses_unknown_values():
    counter = Counter("c", "h", [Label.closed("method", {"GET", "POST"})])
    for n in range(1000):
        counter.inc(f"INVENTED{n}")
    counter.inc("GET")
    assert counter.values == {("other",): 1000, ("GET",): 1}
    assert counter.get("INVENTED5") == 1000  # read where it was recorded


def test_a_label_declared_by_name_is_bounded_too():
    counter = Counter("c", "h", ["model"])
    histogram = Histogram("h", "h", ["queue"])
    gauge = Gauge("g", "h", ["state"])
    for n in range(DEFAULT_LABEL_LIMIT * 10):
        counter.inc(f"m{n}")
        histogram.observe(0.1, f"q{n}")
        gauge.set(1, f"s{n}")
    assert len(counter.values) == DEFAULT_LABEL_LIMIT + 1
    assert len(histogram.counts) == DEFAULT_LABEL_LIMIT + 1
    assert len(gauge.values) == DEFAULT_LABEL_LIMIT + 1
    assert counter.get("m0") == 1 and counter.get("other") == DEFAULT_LABEL_LIMIT * 9
    # Gauge values that collapse into ``other`` add up instead of replacing each other.
    assert gauge.values[("other",)] == DEFAULT_LABEL_LIMIT * 9


def test_the_number_of_series_is_bounded_by_the_declaration():
    registry = Registry()
    metrics = HttpMetrics.declare(registry, frozenset({"/livez", "/api/v1/users/<int:user_id>"}))
    for n in range(500):
        metrics.requests.inc(f"M{n}", f"/path/{n}", str(600 + n))
        metrics.requests.inc("GET", "/livez", "599")
        metrics.duration.observe(0.01, f"M{n}", f"/path/{n}")
    assert set(metrics.requests.values) == {
        ("other", "unmatched", "other"),
        ("GET", "/livez", "other"),
    }
    assert set(metrics.duration.counts) == {("other", "unmatched")}
    text = exposition(registry.metrics.values())
    assert "M1" not in text and "/path/" not in text and "599" not in text


def test_queue_outcomes_are_a_closed_set():
    metrics = QueueMetrics()
    metrics.finished.inc("mail", "completed")
    metrics.finished.inc("mail", "exploded")
    assert set(metrics.finished.values) == {("mail", "completed"), ("mail", "other")}


def test_queue_names_are_bounded_on_every_queue_metric():
    metrics = QueueMetrics()
    for n in range(QUEUE_LABEL_LIMIT * 10):
        queue = f"stray-{n}"
        metrics.claimed.inc(queue)
        metrics.rescued.inc(queue)
        metrics.finished.inc(queue, "completed")
        metrics.wait_seconds.observe(0.1, queue)
        metrics.run_seconds.observe(0.1, queue)
    for series in (
        metrics.claimed.values,
        metrics.rescued.values,
        metrics.finished.values,
        metrics.wait_seconds.counts,
        metrics.run_seconds.counts,
    ):
        assert len(series) == QUEUE_LABEL_LIMIT + 1


def test_redeclaring_with_other_labels_is_refused():
    registry = Registry()
    first = registry.counter("x_total", "h", ["a"])
    assert registry.counter("x_total", "h", [Label("a")]) is first
    with pytest.raises(ValueError, match="declared differently"):
        registry.counter("x_total", "h", ["b"])
    with pytest.raises(ValueError, match="declared differently"):
        registry.histogram("x_total", "h", ["a"])


def test_a_wrong_number_of_label_values_is_refused():
    with pytest.raises(ValueError, match="labels"):
        Counter("c", "h", ["a", "b"]).inc("only-one")
