"""The pure leader-election machine (client-go's rules) driven with literal times."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.kube.election import (
    Action,
    LeaderElection,
    LeaseRecord,
    LeaseTimings,
    lease_object,
    micro_time,
)

WALL = 1_700_000_000.0


def written_by_api(record: LeaseRecord | None, rv: str) -> LeaseRecord:
    """What the API server answers to a successful write: the record with a new version."""
    assert record is not None
    return dataclasses.replace(record, resource_version=rv)


def lead(machine: LeaderElection, now: float) -> LeaseRecord:
    """Read (no Lease), create it, and lead."""
    assert machine.next_action(now, WALL + now) == (Action.READ, None)
    machine.observe(None, now)
    action, record = machine.next_action(now, WALL + now)
    assert action is Action.CREATE
    created = written_by_api(record, "1")
    machine.written(created, now)
    return created


def test_defaults_are_client_go_and_bad_timings_are_refused() -> None:
    timings = LeaseTimings()
    assert (timings.lease_duration_s, timings.renew_deadline_s, timings.retry_period_s) == (
        15.0,
        10.0,
        2.0,
    )
    with pytest.raises(ValueError, match="lease_duration_s > renew_deadline_s"):
        LeaseTimings(lease_duration_s=10.0, renew_deadline_s=10.0)
    with pytest.raises(ValueError, match="retry_period_s"):
        LeaseTimings(renew_deadline_s=2.0, retry_period_s=2.0)


def test_first_candidate_creates_the_lease_and_leads() -> None:
    machine = LeaderElection("a")
    assert not machine.is_leader(0.0)
    created = lead(machine, 0.0)
    assert created.holder == "a"
    assert created.duration_s == 15
    assert created.transitions == 0
    assert created.renew_time == micro_time(WALL) == "2023-11-14T22:13:20.000000Z"
    assert machine.is_leader(0.0)
    assert machine.next_attempt(0.0) == 2.0
    body = lease_object("meshd-east", "meshd-system", created)
    assert body["metadata"] == {
        "name": "meshd-east",
        "namespace": "meshd-system",
        "resourceVersion": "1",
    }
    assert body["spec"]["holderIdentity"] == "a"


def test_leader_renews_from_its_own_record_without_reading() -> None:
    machine = LeaderElection("a")
    created = lead(machine, 0.0)
    action, record = machine.next_action(2.0, WALL + 2.0)
    assert action is Action.UPDATE
    assert record is not None
    assert record.resource_version == "1"
    assert (record.acquire_time, record.renew_time) == (created.acquire_time, micro_time(WALL + 2))
    machine.written(written_by_api(record, "2"), 2.0)
    machine.attempted(2.0)
    assert machine.next_action(4.0, WALL + 4.0)[0] is Action.UPDATE


def test_leader_stops_at_the_renew_deadline_when_renewals_fail() -> None:
    machine = LeaderElection("a")
    lead(machine, 0.0)
    for now in (2.0, 4.0, 6.0, 8.0):
        assert machine.next_action(now, WALL + now)[0] is Action.UPDATE
        machine.failed(now, conflict=False)  # the API server is away
        assert machine.is_leader(now)
    assert machine.is_leader(9.999)
    assert machine.time_left(9.0) == pytest.approx(1.0)  # no write may take longer
    assert not machine.is_leader(10.0)  # the write gate closes on time, loop or no loop
    assert machine.time_left(10.0) == 0.0
    machine.failed(10.0, conflict=False)
    assert not machine.leading


def test_leader_that_finds_another_holder_stops_at_once() -> None:
    machine = LeaderElection("a")
    lead(machine, 0.0)
    assert machine.next_action(2.0, WALL + 2)[0] is Action.UPDATE
    machine.failed(2.0, conflict=True)  # 409: someone wrote the Lease
    assert machine.is_leader(2.0)  # still ours as far as we know: read before deciding
    assert machine.next_action(2.1, WALL + 2.1) == (Action.READ, None)
    machine.observe(LeaseRecord("b", 15, "t", "t", 1, "7"), 2.1)
    assert not machine.is_leader(2.1)
    assert machine.next_action(2.1, WALL + 2.1) == (Action.WAIT, None)


def test_follower_waits_a_lease_duration_after_the_last_change_it_saw() -> None:
    machine = LeaderElection("b")
    held = LeaseRecord("a", 15, "t0", "t0", 0, "1")
    machine.observe(held, 0.0)
    assert machine.next_action(0.0, WALL)[0] is Action.WAIT
    machine.attempted(0.0)
    assert machine.next_action(2.0, WALL + 2)[0] is Action.READ
    renewed = dataclasses.replace(held, renew_time="t10", resource_version="2")
    machine.observe(renewed, 10.0)  # the holder renewed: the clock starts again
    machine.observe(renewed, 24.9)
    assert not machine.expired(24.9)
    assert machine.next_action(24.9, WALL + 24.9)[0] is Action.WAIT
    machine.observe(renewed, 25.0)
    action, record = machine.next_action(25.0, WALL + 25)
    assert action is Action.UPDATE
    assert record == LeaseRecord("b", 15, micro_time(WALL + 25), micro_time(WALL + 25), 1, "2")


def test_record_duration_is_used_for_expiry() -> None:
    machine = LeaderElection("b", LeaseTimings(15.0, 10.0, 2.0))
    machine.observe(LeaseRecord("a", 40, "t", "t", 0, "1"), 0.0)
    machine.observe(LeaseRecord("a", 40, "t", "t", 0, "1"), 39.0)
    assert not machine.expired(39.0)
    assert machine.expired(40.0)


def test_two_candidates_race_for_an_expired_lease_and_one_wins() -> None:
    a, b = LeaderElection("a"), LeaderElection("b")
    dead = LeaseRecord("x", 15, "t", "t", 3, "9")
    for machine in (a, b):
        machine.observe(dead, 0.0)
        machine.observe(dead, 15.0)
    _, take_a = a.next_action(15.0, WALL)
    _, take_b = b.next_action(15.0, WALL)
    assert take_a is not None
    assert take_b is not None
    assert take_a.resource_version == take_b.resource_version == "9"
    a.written(written_by_api(take_a, "10"), 15.0)  # the server takes the first
    b.failed(15.0, conflict=True)  # the second is stale: 409
    assert a.is_leader(15.0)
    assert not b.is_leader(15.0)
    assert b.next_action(15.1, WALL)[0] is Action.READ
    b.observe(written_by_api(take_a, "10"), 15.1)
    assert b.next_action(15.1, WALL)[0] is Action.WAIT
    assert take_a.transitions == 4


def test_release_hands_over_without_waiting_a_lease_duration() -> None:
    a, b = LeaderElection("a"), LeaderElection("b")
    created = lead(a, 0.0)
    b.observe(created, 0.0)
    release = a.release(WALL + 5)
    assert release is not None
    assert (release.holder, release.duration_s, release.resource_version) == ("", 1, "1")
    a.released()
    assert not a.is_leader(5.0)
    assert a.release(WALL + 6) is None  # nothing more to give up
    b.observe(written_by_api(release, "2"), 5.0)
    action, record = b.next_action(5.0, WALL + 5)
    assert action is Action.UPDATE
    assert record is not None
    assert (record.holder, record.transitions) == ("b", 1)


def test_deleted_lease_ends_leadership_and_is_created_again() -> None:
    machine = LeaderElection("a")
    lead(machine, 0.0)
    machine.failed(2.0, conflict=True)
    machine.observe(None, 2.0)  # someone deleted it
    assert not machine.is_leader(2.0)
    assert machine.next_action(2.0, WALL)[0] is Action.CREATE


def test_record_from_an_api_object() -> None:
    obj = {
        "metadata": {"name": "meshd-east", "resourceVersion": "12"},
        "spec": {
            "holderIdentity": "pod-1_abc",
            "leaseDurationSeconds": 15,
            "acquireTime": "2023-11-14T22:13:20.000000Z",
            "renewTime": "2023-11-14T22:13:22.000000Z",
            "leaseTransitions": 2,
        },
    }
    record = LeaseRecord.from_object(obj)
    assert record == LeaseRecord(
        "pod-1_abc", 15, "2023-11-14T22:13:20.000000Z", "2023-11-14T22:13:22.000000Z", 2, "12"
    )
    assert LeaseRecord.from_object({"spec": None}) == LeaseRecord()


def test_failed_renewals_are_retried_at_the_retry_pace_not_in_a_tight_loop() -> None:
    """A leader whose renewals fail must not hammer an API server that is already failing."""
    machine = LeaderElection("a")
    lead(machine, 0.0)
    retry = machine.timings.retry_period_s
    now, attempts = 2.0, 0
    while machine.is_leader(now):
        assert machine.next_action(now, WALL + now)[0] is Action.UPDATE
        machine.failed(now, conflict=False)
        machine.attempted(now)
        attempts += 1
        now = machine.next_attempt(now)
    deadline = machine.timings.renew_deadline_s
    assert attempts <= deadline / retry + 2


def test_leadership_counts_from_when_the_renewal_was_sent() -> None:
    machine = LeaderElection("a")
    created = lead(machine, 0.0)
    _, record = machine.next_action(2.0, WALL + 2.0)
    assert record is not None
    # Sent at 2.0, answered (slowly) at 7.0: the deadline runs from 2.0.
    machine.written(written_by_api(record, "2"), 2.0)
    assert machine.time_left(7.0) == pytest.approx(machine.timings.renew_deadline_s - 5.0)
    assert created.holder == "a"


def test_annotations_survive_renewals_takeovers_and_releases() -> None:
    """A PUT replaces the whole Lease: every write keeps the annotations read (the drain)."""
    obj = {
        "metadata": {
            "name": "meshd-east",
            "resourceVersion": "7",
            "annotations": {"meshd.io/drain": "{}", "other": "x", "bad": 5},
        },
        "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15},
    }
    record = LeaseRecord.from_object(obj)
    assert record.annotations == (("meshd.io/drain", "{}"), ("other", "x"))
    written = lease_object("meshd-east", "meshd-system", record)
    assert written["metadata"]["annotations"] == {"meshd.io/drain": "{}", "other": "x"}
    machine = LeaderElection("a")
    machine.observe(record, 0.0)
    machine.attempted(0.0)
    machine.observe(record, 2.0)
    action, takeover = machine.next_action(20.0, WALL + 20)
    assert action is Action.UPDATE
    assert takeover is not None
    assert takeover.annotations == record.annotations
    machine.written(written_by_api(takeover, "8"), 20.0)
    action, renewal = machine.next_action(22.0, WALL + 22)
    assert renewal is not None
    assert renewal.annotations == record.annotations
    released = machine.release(WALL + 23)
    assert released is not None
    assert released.annotations == record.annotations
    assert "annotations" not in lease_object("n", "ns", LeaseRecord("a"))["metadata"]
