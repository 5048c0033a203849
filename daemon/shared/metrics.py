"""In-process metrics: counters and histograms with labels, read by the metrics endpoint.

Deliberately small: no background threads, no global state beyond the registry object
the composition root creates. Recording is a dict lookup and an addition, cheap enough
for the job queue's hot path.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Labels = tuple[str, ...]

# Seconds; spans the queue's wake-up latency (ms) to long jobs (minutes).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] += amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)


class Histogram:
    """Observations bucketed by upper bound, with their count and sum, per label set."""

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def count(self, *labels: str) -> int:
        return sum(self.counts.get(labels, ()))

    def quantile(self, q: float, *labels: str) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None without data)."""
        counts = self.counts.get(labels)
        if not counts:
            return None
        rank = q * sum(counts)
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen >= rank and count:
                return self.buckets[index] if index < len(self.buckets) else float("inf")
        return float("inf")


class Gauge:
    """A value per label set that can go up and down (also used for values read at
    scrape time, such as queue depths)."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value


Metric = Counter | Histogram | Gauge


class Registry:
    """The metrics of one process, by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        metric = self.metrics.setdefault(name, Counter(name, help_text, label_names))
        assert isinstance(metric, Counter)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = self.metrics.setdefault(name, Histogram(name, help_text, label_names, buckets))
        assert isinstance(metric, Histogram)
        return metric


def exposition(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of ``metrics``."""
    lines: list[str] = []
    for metric in metrics:
        kind = {Counter: "counter", Histogram: "histogram", Gauge: "gauge"}[type(metric)]
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {kind}")
        if isinstance(metric, Histogram):
            for labels, counts in sorted(metric.counts.items()):
                cumulative = 0
                for bound, count in zip((*metric.buckets, math.inf), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == math.inf else _number(bound)
                    pairs = _label_text(metric.label_names, labels, ("le", le))
                    lines.append(f"{metric.name}_bucket{pairs} {cumulative}")
                pairs = _label_text(metric.label_names, labels)
                lines.append(f"{metric.name}_sum{pairs} {_number(metric.sums[labels])}")
                lines.append(f"{metric.name}_count{pairs} {cumulative}")
        else:
            for labels, value in sorted(metric.values.items()):
                lines.append(
                    f"{metric.name}{_label_text(metric.label_names, labels)} {_number(value)}"
                )
    return "\n".join(lines) + "\n"


def _label_text(names: tuple[str, ...], values: Labels, *extra: tuple[str, str]) -> str:
    pairs = [*zip(names, values, strict=True), *extra]
    if not pairs:
        return ""
    inner = ",".join(f'{name}="{_escape_value(value)}"' for name, value in pairs)
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
