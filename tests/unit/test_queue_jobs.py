"""The retry arithmetic of ``daemon.queue.jobs.Backoff``: pure, no database, seeded."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from daemon.queue import Backoff


def test_ceiling_doubles_from_the_base_until_the_cap():
    backoff = Backoff(base_seconds=1.5, max_seconds=20.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [1.5, 3.0, 6.0, 12.0, 20.0, 20.0]


def test_ceiling_of_a_first_or_nonsensical_attempt_is_the_base():
    backoff = Backoff(base_seconds=2.0, max_seconds=100.0)
    assert backoff.ceiling(1) == backoff.ceiling(0) == backoff.ceiling(-3) == 2.0


def test_huge_attempt_counts_neither_overflow_nor_exceed_the_cap():
    backoff = Backoff(base_seconds=1.0, max_seconds=600.0)
    assert backoff.ceiling(10_000) == 600.0
    assert backoff.delay(10_000, random.Random(1)) <= 600.0
    uncapped = Backoff(base_seconds=1.0, max_seconds=float("inf"))
    assert uncapped.ceiling(10_000) == 2.0**62  # the exponent is clamped, not the float


def test_full_jitter_stays_within_zero_and_the_ceiling():
    rng = random.Random(20240611)
    backoff = Backoff(base_seconds=0.5, max_seconds=30.0)
    for attempts in range(1, 12):
        ceiling = backoff.ceiling(attempts)
        delays = [backoff.delay(attempts, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays), attempts
        # Full jitter: spread over the whole interval, not clustered near the ceiling.
        assert min(delays) < 0.05 * ceiling
        assert max(delays) > 0.95 * ceiling
        assert statistics.fmean(delays) == pytest.approx(ceiling / 2, rel=0.1)


def test_delays_grow_with_attempts_until_the_cap():
    rng = random.Random(7)
    backoff = Backoff(base_seconds=1.0, max_seconds=64.0)
    means = [statistics.fmean(backoff.delay(n, rng) for _ in range(2000)) for n in range(1, 10)]
    assert all(later > earlier * 1.6 for earlier, later in itertools.pairwise(means[:7]))
    assert means[7] == pytest.approx(32.0, rel=0.1)  # capped at 64: mean 32 from attempt 7 on
    assert means[8] == pytest.approx(32.0, rel=0.1)


def test_the_same_seed_gives_the_same_delays():
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(42)) for n in range(1, 6)]
    again = [backoff.delay(n, random.Random(42)) for n in range(1, 6)]
    assert first == again


def test_a_zero_base_means_retry_at_once():
    assert Backoff(base_seconds=0.0).delay(5, random.Random(3)) == 0.0


def test_defaults_are_one_second_doubling_to_ten_minutes():
    backoff = Backoff()
    assert (backoff.ceiling(1), backoff.ceiling(11)) == (1.0, 600.0)


@pytest.mark.parametrize("kwargs", [{"base_seconds": -1.0}, {"max_seconds": -0.5}])
def test_negative_durations_are_rejected(kwargs):
    with pytest.raises(ValueError, match="must be >= 0"):
        Backoff(**kwargs)
