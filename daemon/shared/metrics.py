"""In-process metrics: counters and histograms with labels, read by the metrics endpoint.

Deliberately small: no background threads, no global state beyond the registry object
the composition root creates. Recording is a dict lookup and an addition, cheap enough
for the job queue's hot path.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

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


class Registry:
    """The metrics of one process, by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, Counter | Histogram] = {}

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
