"""The health loop's gate (``mesh.daemon.health_gate``): a full look when an input moved,
just after the peer table's next moment of change, or ``full_s`` after the last look; the
poll never sleeps past a due look."""

from __future__ import annotations

import pytest

from mesh.daemon.health_gate import PAST_S, HealthGate

INPUTS = (3, 7, 1, True)


def test_the_first_poll_looks() -> None:
    assert HealthGate().must_look(INPUTS, 0.0)


def test_same_inputs_before_anything_is_due_skip_the_look() -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, None)
    assert not gate.must_look(INPUTS, 10.1)
    assert not gate.must_look(INPUTS, 10.499)


@pytest.mark.parametrize(
    "moved", [(4, 7, 1, True), (3, 8, 1, True), (3, 7, 2, True), (3, 7, 1, False)]
)
def test_any_input_moved_means_a_look(moved: tuple[int, int, int, bool]) -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, None)
    assert gate.must_look(moved, 10.01)


def test_a_look_is_due_after_full_s_whatever_the_inputs() -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, None)
    assert gate.must_look(INPUTS, 10.5)


def test_a_peer_timeout_brings_the_look_forward_just_past_it() -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, next_change=10.2)
    assert not gate.must_look(INPUTS, 10.2)  # reachable is <= the timeout: not yet moved
    assert gate.must_look(INPUTS, 10.2 + PAST_S)
    assert gate.due == pytest.approx(10.2 + PAST_S)


def test_a_later_peer_timeout_does_not_push_the_full_look_back() -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, next_change=30.0)
    assert gate.due == pytest.approx(10.5)


def test_the_poll_sleeps_until_a_due_look_at_most() -> None:
    gate = HealthGate(full_s=0.5)
    gate.looked(INPUTS, 10.0, next_change=10.03)
    assert gate.wait(10.0, 0.1) == pytest.approx(0.03 + PAST_S)
    assert gate.wait(10.0 + 0.03 + PAST_S, 0.1) == 0.0
    gate.looked(INPUTS, 20.0, None)
    assert gate.wait(20.0, 0.1) == pytest.approx(0.1)
    assert gate.wait(20.45, 0.1) == pytest.approx(0.05)
    assert gate.wait(21.0, 0.1) == 0.0
