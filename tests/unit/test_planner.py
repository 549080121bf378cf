"""The answer planner: one pass over the states for a large rebuild gives exactly the plan
of a scan per service."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.ring.catalog import Change, diff
from mesh.routing import planner as planner_module
from mesh.routing.modes import Answering
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality


def _states(seed: int) -> list[ClusterState]:
    rng = random.Random(seed)
    keys = [ServiceKey(rng.choice(["shop", "ops"]), f"s{i}") for i in range(150)]
    states = []
    for c in range(5):
        services = {}
        for key in rng.sample(keys, 90):
            kind = rng.choice([ServiceType.CLUSTER_SET_IP, ServiceType.HEADLESS])
            endpoints = tuple(
                Endpoint((f"10.{c}.{rng.randrange(250)}.{i + 1}",), rng.random() < 0.8)
                for i in range(rng.randrange(1, 4))
            )
            services[key] = ExportedService(key, kind, endpoints=endpoints)
        region = "us" if c < 3 else "eu"
        states.append(ClusterState(f"c{c}", 1, 1, region, "", frozenset({"shop"}), services))
    return states


@pytest.mark.parametrize("seed", range(5))
def test_the_indexed_plan_equals_the_plan_of_a_scan_per_service(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = _states(seed)
    plans = []
    for index_from in (1, 10**9):  # always index, never index
        monkeypatch.setattr(planner_module, "INDEX_FROM", index_from)
        planner = AnswerPlanner(Locality("c1", "us"))
        planner.note_health({"c0", "c1", "c3"}, states)  # c2 and c4 down: fail open paths too
        for state in states:
            planner.note(Change(state.cluster_id, frozenset(state.services), cluster=True))
        plans.append((planner.plan(states, frozenset({"shop"})), set(planner.failed_open)))
    assert plans[0] == plans[1]
    assert len(plans[0][0]) > 30
    assert plans[0][1]  # some services failed open


def test_clusterset_ip_selections_and_vips() -> None:
    """The planner keeps the policy's choice of each service answering in mode
    clusterset-ip (with a version the writer follows), and a VIP dirties its service."""
    web = ServiceKey("shop", "web")
    east = ExportedService(web, ServiceType.CLUSTER_SET_IP, endpoints=(Endpoint(("10.0.0.1",)),))
    west = ExportedService(web, ServiceType.CLUSTER_SET_IP, endpoints=(Endpoint(("10.1.0.1",)),))
    states = [
        ClusterState("east", 1, 1, "us", "", frozenset({"shop"}), {web: east}),
        ClusterState("west", 1, 1, "us", "", frozenset({"shop"}), {web: west}),
    ]
    planner = AnswerPlanner(Locality("east", "us"), answering=Answering("clusterset-ip", True))
    planner.note_health({"east", "west"}, states)
    [(_, records)] = planner.plan(states, frozenset({"shop"}))
    assert records is not None
    assert records.addresses == ("10.0.0.1",)  # no VIP yet: endpoints
    assert [c for c, _, _ in planner.selections[web]] == ["east"]
    version = planner.selections_version
    planner.note_health({"west"}, states)  # east dead: the choice moves to west
    planner.plan(states, frozenset({"shop"}))
    assert [c for c, _, _ in planner.selections[web]] == ["west"]
    assert planner.selections_version == version + 1
    change = planner.note_vips({web: ("10.96.0.9",)})
    assert change.services == {web}
    [(_, records)] = planner.plan(states, frozenset({"shop"}))
    assert records is not None
    assert records.addresses == ("10.96.0.9",)
    assert not planner.note_vips({web: ("10.96.0.9",)})  # unchanged: nothing dirty


def test_plan_steps_runs_the_policy_only_as_updates_are_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states = _states(7)
    decided: list[ServiceKey] = []
    real = planner_module.decide_service

    def counting(key: ServiceKey, *args: object, **kwargs: object) -> object:
        decided.append(key)
        return real(key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(planner_module, "decide_service", counting)
    planner = AnswerPlanner(Locality("c1", "us"))
    planner.note_health({"c0", "c1", "c2", "c3", "c4"}, states)
    steps = planner.plan_steps(states, frozenset({"shop", "ops"}))
    assert decided == []
    first = next(u for u in steps if u is not None)
    assert decided == [first[0]]  # one service's policy run, the rest waits for the caller
    planner.note(Change("c0", frozenset({first[0]})))  # noted meanwhile: for the next plan
    rest = [u for u in steps if u is not None]
    assert [k for k, _ in [first, *rest]] == sorted(k for k, _ in [first, *rest])
    assert planner.plan(states, frozenset({"shop", "ops"}))[0][0] == first[0]


def test_a_plan_of_everything_is_prepared_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner_module, "PREPARE_STEP", 10)
    states = _states(3)
    exported = {k for s in states for k in s.services}
    planner = AnswerPlanner(Locality("c1", "us"))
    planner.note_health({"c0", "c1", "c2", "c3", "c4"}, states)
    steps = planner.plan_steps(states, frozenset({"shop", "ops"}))
    before_first = 0
    while next(steps) is None:
        before_first += 1
    # gathering the keys as their exporters are indexed (one pass), then sorting: each in
    # pieces of 10 services
    held = sum(len(s.services) for s in states)
    assert before_first >= held // 10 + len(exported) // 10
    assert len([u for u in steps if u is not None]) == len(exported) - 1


@pytest.mark.parametrize("seed", range(10))
def test_incremental_plans_equal_a_fresh_plan_as_clusters_arrive_move_and_go(seed: int) -> None:
    """Another cluster's first state, new locality or end dirties only what it exports; the
    zone the incremental plans build is, after every change, what a fresh plan gives."""
    print(f"seed {seed}")
    rng = random.Random(seed)
    pool = {s.cluster_id: s for s in _states(seed)}
    held = {"c1": pool["c1"]}  # this agent's own state first
    namespaces = frozenset({"shop"})
    planner = AnswerPlanner(Locality("c1", "us"))
    planner.note_health(set(pool), [])  # health stays: only the states move
    planner.note(Change("c1", frozenset(pool["c1"].services), cluster=True))
    zone: dict[ServiceKey, object] = {}
    for step in range(15):
        others = sorted(c for c in pool if c != "c1")
        cluster = rng.choice(others)
        before = held.get(cluster)
        if before is None:  # a cluster arrives
            held[cluster] = pool[cluster]
            change = diff(None, pool[cluster])
        elif rng.random() < 0.3:  # forgotten
            del held[cluster]
            change = Change(cluster, frozenset(before.services), cluster=True)
        else:  # moves to another region, exports the same
            region = "eu" if before.region == "us" else "us"
            held[cluster] = moved = replace(before, region=region, version=before.version + 1)
            change = diff(before, moved)
            assert change.cluster
            assert not change.services
        planner.note(change)
        states = sorted(held.values(), key=lambda s: s.cluster_id)
        for key, records in planner.plan(states, namespaces):
            if records is None:
                zone.pop(key, None)
            else:
                zone[key] = records
        fresh = AnswerPlanner(Locality("c1", "us"))
        fresh.note_health(set(pool), [])
        expected = {k: r for k, r in fresh.plan(states, namespaces) if r is not None}
        assert zone == expected, f"seed {seed}, step {step}: {change}"


def test_another_cluster_arriving_plans_only_what_it_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states = _states(3)
    planner = AnswerPlanner(Locality("c1", "us"))
    for state in states[:4]:
        planner.note(diff(None, state))
    planner.plan(states[:4], frozenset({"shop"}))
    decided: list[ServiceKey] = []
    decide = planner._decide
    monkeypatch.setattr(
        planner, "_decide", lambda key, *rest: decided.append(key) or decide(key, *rest)
    )
    planner.note(diff(None, states[4]))  # c4 arrives: its 90 services, not all 150
    planner.plan(states, frozenset({"shop"}))
    assert sorted(decided) == sorted(states[4].services)
    decided.clear()
    planner.note(Change("c1", cluster=True))  # this cluster's own locality: everything
    planner.plan(states, frozenset({"shop"}))
    assert set(decided) == {k for s in states for k in s.services}


def _planner_state(planner: AnswerPlanner) -> tuple[object, ...]:
    return (
        planner.zone_keys,
        planner.failed_open,
        planner.later_tier,
        planner.drained_used,
        planner.tier_changes,
        planner.problems,
        planner.new_problems,
        planner.port_notes,
        planner.selections,
        planner.selections_version,
    )


@pytest.mark.parametrize("seed", range(12))
def test_plain_services_without_a_decision_leave_the_planner_as_with_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain service planned from ``plain_records`` (no ``Decision``) gives the same
    updates and leaves the planner's bookkeeping (tiers, problems, port notes, selections)
    as the general path does, through health, drain and export changes."""
    from tests.unit.test_plain_policy import _export  # services of every shape

    print(f"seed {seed}")
    rng = random.Random(seed)
    keys = [ServiceKey(rng.choice(["shop", "ops"]), f"s{i}") for i in range(120)]
    clusters = ["c0", "c1", "c2", "c3"]
    vip = "clusterset-ip"

    def states() -> list[ClusterState]:
        out = []
        for c in clusters:
            picked = rng.sample(keys, rng.choice([30, 60, 90]))
            services = {k: replace(_export(rng), key=k) for k in picked}
            for k in rng.sample(picked, 5):  # selections to drop when they turn plain
                services[k] = replace(services[k], annotations=(("meshd.io/answer-mode", vip),))
            out.append(ClusterState(c, 1, 1, rng.choice(["us", "eu"]), "", frozenset(), services))
        return out

    held = states()
    answering = Answering("endpoints", vips=True)
    planners = [AnswerPlanner(Locality("c1", "us"), answering=answering) for _ in range(2)]
    for step in range(8):
        if step and rng.random() < 0.5:
            held = states()
        healthy = {c for c in clusters if rng.random() < 0.8}
        drained = {c for c in clusters if rng.random() < 0.15}
        plans = []
        for general, planner in enumerate(planners):
            with monkeypatch.context() as patch:
                if general:  # every service the general way (``plain_decision`` too)
                    patch.setattr(planner_module, "plain_records", lambda *a: None)
                    patch.setattr(planner_module, "plain_decision", lambda *a: None)
                planner.note_health(healthy, held)
                planner.note_drained(drained, held)
                for state in held:
                    planner.note(Change(state.cluster_id, frozenset(state.services), cluster=True))
                plans.append(planner.plan(held, frozenset({"shop"})))
        assert plans[0] == plans[1], f"seed {seed}, step {step}"
        assert _planner_state(planners[0]) == _planner_state(planners[1]), f"seed {seed}, {step}"
    assert planners[0].problems, f"seed {seed}: no port problem seen"
    assert planners[0].selections_version, f"seed {seed}: no selection seen"


@pytest.mark.parametrize("seed", range(5))
def test_one_dirty_cluster_indexes_the_others_in_order(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's change dirties what it exports; the other clusters exporting the same
    services (this one among them) are indexed in a second pass and put back in
    ``exporters_of`` order: the plan is that of a scan per service."""
    print(f"seed {seed}")
    states = _states(seed)
    plans = []
    for index_from in (1, 10**9):
        monkeypatch.setattr(planner_module, "INDEX_FROM", index_from)
        planner = AnswerPlanner(Locality("c1", "us"))
        planner.note_health({"c0", "c1", "c3"}, states)
        planner.plan(states, frozenset({"shop"}))
        moved = replace(states[3], region="us", version=2)  # c3 moves: its services dirty
        now = [*states[:3], moved, *states[4:]]
        planner.note(diff(states[3], moved))
        planner.note(Change("c2", frozenset(list(states[2].services)[:5])))  # and a few more
        plans.append((planner.plan(now, frozenset({"shop"})), set(planner.failed_open)))
    assert plans[0] == plans[1], f"seed {seed}"
    assert len(plans[0][0]) > 30, f"seed {seed}"


def test_exporters_put_back_in_order_are_sorted_once_each() -> None:
    """A key a dirty cluster exports and many others too: ``_index_others`` puts its
    exporters back in order with one sort, not one per state that joined (a list of n
    exporters sorted n times: at 100 clusters exporting the same 5,000 services, one
    cluster's change held the event loop about 3 s in one step, without a None)."""

    class Counted(list):  # type: ignore[type-arg]
        sorts = 0

        def sort(self, *args: object, **kwargs: object) -> None:
            Counted.sorts += 1
            super().sort(*args, **kwargs)  # type: ignore[arg-type]

    key = ServiceKey("shop", "web")
    svc = replace(_states(0)[0].services[next(iter(_states(0)[0].services))], key=key)
    ordered = [ClusterState(f"c{n:02d}", 1, 1, "us", services={key: svc}) for n in range(40)]
    dirty = [ordered[-2], ordered[-1]]  # two dirty: the index holds a list of them
    index: dict[ServiceKey, object] = {key: Counted(dirty)}
    rank = {id(s): n for n, s in enumerate(ordered)}
    steps = planner_module._index_others(index, set(), ordered[:-2], rank)  # type: ignore[arg-type]
    assert all(step is None for step in steps)
    assert index[key] == ordered
    assert Counted.sorts == 1
