"""In-process metrics: counters and histograms with labels, read by the metrics endpoint.

Deliberately small: no background threads, no global state beyond the registry object
the composition root creates. Recording is a dict lookup and an addition, cheap enough
for the job queue's hot path.

Every label of every metric comes from a closed set (see :class:`Label`): a value
outside it is recorded as the label's ``other`` value, so no input (an invented HTTP
method, a scanner's paths) can add series. The number of series of a metric is at most
the product of its labels' bounds, whatever the process is sent.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import TYPE_CHECKING, TypeVar

import attrs

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


DEFAULT_LABEL_LIMIT = 64
"""Distinct values a label declared only by its name may take before the rest collapse
into its ``other`` value."""

OTHER = "other"


@attrs.frozen
class Label:
    """One label of a metric and the closed set of values it may take.

    Every label is bounded, so no input can grow the registry: a value outside
    ``values`` (or, for a label without a fixed set, any new value once ``limit``
    distinct ones were seen) is recorded as ``other``. A label declared by its name
    alone is bounded by :data:`DEFAULT_LABEL_LIMIT`.
    """

    name: str
    values: frozenset[str] | None = None
    limit: int = DEFAULT_LABEL_LIMIT
    other: str = OTHER

    def __attrs_post_init__(self) -> None:
        if self.values is None and self.limit < 1:
            raise ValueError(f"label {self.name!r}: a limit must be at least 1")

    @classmethod
    def closed(cls, name: str, values: Iterable[str], *, other: str = OTHER) -> Label:
        """A label whose values are exactly ``values``, anything else being ``other``."""
        return cls(name, values=frozenset(values), other=other)

    @classmethod
    def of(cls, declared: str | Label) -> Label:
        return declared if isinstance(declared, Label) else cls(declared)


class _Labelled:
    """The label declarations of a metric and the mapping of values onto them."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str | Label]) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(Label.of(label) for label in labels)
        self.label_names = tuple(label.name for label in self.labels)
        # Values seen so far, for the labels bounded by a limit rather than a set.
        self._seen: tuple[set[str], ...] = tuple(set() for _ in self.labels)

    def _admit(self, values: tuple[str, ...]) -> Labels:
        """The series key for ``values``: each one kept, or collapsed into ``other``."""
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: labels {self.label_names}, got {len(values)} values")
        return tuple(
            self._one(label, seen, value, admit=True)
            for label, seen, value in zip(self.labels, self._seen, values, strict=True)
        )

    def _find(self, values: tuple[str, ...]) -> Labels:
        """The series key ``values`` would be recorded under, without admitting any."""
        return tuple(
            self._one(label, seen, value, admit=False)
            for label, seen, value in zip(self.labels, self._seen, values, strict=True)
        )

    @staticmethod
    def _one(label: Label, seen: set[str], value: str, *, admit: bool) -> str:
        if label.values is not None:
            return value if value in label.values else label.other
        if value in seen or value == label.other:
            return value
        if len(seen) < label.limit:
            if admit:
                seen.add(value)
            return value
        return label.other


class Counter(_Labelled):
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str | Label] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[self._admit(labels)] += amount

    def get(self, *labels: str) -> float:
        return self.values.get(self._find(labels), 0.0)


class Histogram(_Labelled):
    """Observations bucketed by upper bound, with their count and sum, per label set."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str | Label] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, *labels: str) -> None:
        key = self._admit(labels)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] += value

    def count(self, *labels: str) -> int:
        return sum(self.counts.get(self._find(labels), ()))

    def quantile(self, q: float, *labels: str) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None without data)."""
        counts = self.counts.get(self._find(labels))
        if not counts:
            return None
        rank = q * sum(counts)
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen >= rank and count:
                return self.buckets[index] if index < len(self.buckets) else float("inf")
        return float("inf")


class Gauge(_Labelled):
    """A value per label set that can go up and down (also used for values read at
    scrape time, such as queue depths). Values collapsed into ``other`` add up."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str | Label] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        key = self._admit(labels)
        if key != labels and key in self.values:
            # Several values collapsed into one series: keep their total, not the last.
            self.values[key] += value
        else:
            self.values[key] = value


Metric = Counter | Histogram | Gauge
_M = TypeVar("_M", Counter, Histogram)


class Registry:
    """The metrics of one process, by name.

    Declaring a name again returns the metric declared first; its kind and label names
    must match (its allowed values are the first declaration's).
    """

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, labels: Sequence[str | Label] = ()) -> Counter:
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = Counter(name, help_text, labels)
        return _same(metric, Counter, labels)

    def gauge(self, name: str, help_text: str, labels: Sequence[str | Label] = ()) -> Gauge:
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = Gauge(name, help_text, labels)
        if not isinstance(metric, Gauge) or metric.label_names != tuple(
            Label.of(label).name for label in labels
        ):
            raise ValueError(f"{name} is already declared differently")
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str | Label] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = Histogram(name, help_text, labels, buckets)
        return _same(metric, Histogram, labels)


def _same(metric: Metric, kind: type[_M], labels: Sequence[str | Label]) -> _M:
    names = tuple(Label.of(label).name for label in labels)
    if not isinstance(metric, kind) or metric.label_names != names:
        raise ValueError(f"{metric.name} is already declared differently")
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
