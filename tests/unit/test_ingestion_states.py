"""The ingestion state machine, as a pure table."""

from __future__ import annotations

import itertools

import pytest

from daemon.modules.ingestion import InvalidTransition
from daemon.modules.ingestion.states import (
    STEPS,
    TERMINAL_STATES,
    DocumentState,
    Outcome,
    next_step,
    reanalyze_target,
    retry_target,
    step_from,
    step_named,
    step_of_queue,
    transition,
)

S = DocumentState


def test_the_eight_states_in_order():
    path = [STEPS[0].from_state] + [step.to_state for step in STEPS]
    assert path == [
        S.RECEIVED, S.FETCHED, S.HASHED, S.EXTRACTED, S.NORMALIZED, S.ANALYZED, S.ROUTED,
        S.COMPLETED,
    ]  # fmt: skip
    assert [s.queue for s in STEPS] == [f"ingest.{s.name}" for s in STEPS]


def test_each_step_leads_to_the_next_and_the_last_to_none():
    for step, following in itertools.pairwise(STEPS):
        assert next_step(step) is following
        assert step_from(step.to_state) is following
    assert next_step(STEPS[-1]) is None
    assert all(step_from(state) is None for state in TERMINAL_STATES)
    assert all(state.terminal for state in (S.COMPLETED, S.DUPLICATE, S.FAILED))
    assert not S.ROUTED.terminal


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_transitions_of_every_step(step):
    assert transition(step.from_state, step, Outcome.ADVANCED) is step.to_state
    assert transition(step.from_state, step, Outcome.FAILED) is S.FAILED
    if step.name == "hash":
        assert transition(step.from_state, step, Outcome.DUPLICATE) is S.DUPLICATE
    else:
        with pytest.raises(InvalidTransition):
            transition(step.from_state, step, Outcome.DUPLICATE)
    for state in DocumentState:
        if state is not step.from_state:
            with pytest.raises(InvalidTransition):  # a redelivered job: already done
                transition(state, step, Outcome.ADVANCED)


def test_lookups():
    assert step_named("analyze").from_state is S.NORMALIZED
    assert step_of_queue("ingest.route") is step_named("route")
    assert step_of_queue("ingest.dead") is None
    with pytest.raises(KeyError):
        step_named("teleport")


def test_retry_restarts_at_the_failed_step_only_for_failed_documents():
    assert retry_target(S.FAILED, "extract") is step_named("extract")
    with pytest.raises(InvalidTransition, match="only failed"):
        retry_target(S.COMPLETED, None)
    with pytest.raises(InvalidTransition, match="unknown step"):
        retry_target(S.FAILED, None)


def test_reanalysis_needs_normalized_text():
    analyze = step_named("analyze")
    for state in (S.ANALYZED, S.ROUTED, S.COMPLETED):
        assert reanalyze_target(state, None) is analyze
    assert reanalyze_target(S.FAILED, "route") is analyze
    for state, failed in ((S.RECEIVED, None), (S.DUPLICATE, None), (S.FAILED, "extract")):
        with pytest.raises(InvalidTransition):
            reanalyze_target(state, failed)
