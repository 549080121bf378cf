"""The ring across real network namespaces: cut, degraded, killed and one-way links.

Three ``meshd run`` processes, each in its own namespace, linked by the emulator of
``tests.netns.linkemu``; every check is a DNS answer asked from inside a namespace, or the
agent's ``/metrics``. Settings: ``--gossip-interval 0.2 --peer-timeout 1.5``; the bounds
come from them (``RingSettings.drop_bound_s`` and ``return_bound_s``: 3.4 s and 7.4 s).

- (a) south's links cut both ways (a black hole): east and west drop south's endpoint from
  ``db`` (headless, exported by all three) within the drop bound, and still answer
  ``checkout`` (exported by south alone) with its last-known endpoint, counted in
  ``meshd_failed_open_services`` (fail open); south drops the other two. After the heal
  every answer of every agent is the one it gave before (nothing lost, nothing resurrected)
  within the return bound. A second round does the same while south un-exports
  ``checkout`` behind the partition: after the heal nobody answers it any more.
- (b) 5% loss and 20 ms delay on every directed link for 20 s, DNS polled every 100 ms on
  every agent: every ``db`` answer holds all three clusters.
- (c) south's agent killed with SIGKILL leaves east's and west's answers within the drop
  bound; restarted, it is back in every answer within the return bound of its readiness.
- (d) one direction only, south -> east, dropped. TCP needs both directions, so the pair
  loses each other both ways: east drops south and south drops east within the drop bound,
  while west, which reaches both, keeps all three in every answer throughout, and neither
  east nor south drops west. Healed, all is back within the return bound.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import pytest

from tests.netns.harness import Answer, Lab
from tests.netns.shop import (
    ALL_DB,
    CHECKOUT,
    DB,
    DB_OF,
    EXPECTED,
    WEB,
    ok,
    snapshot,
)

pytestmark = pytest.mark.integration
METRIC_LAG_S = 2.0  # a gauge may be set just after the answers it describes


def within(lab: Lab, what: str, probe: Callable[[], bool], since: float, bound_s: float) -> float:
    """Poll every 20 ms until ``probe`` holds; fail unless a poll begun by ``since + bound_s``
    saw it hold (a slow poll that starts late does not count).

    Returns the seconds from ``since`` to the start of the first poll where it held.
    """
    deadline = since + bound_s
    while True:
        started = time.monotonic()
        if started > deadline:
            raise AssertionError(
                f"{what}: not within {bound_s:.1f}s\n{snapshot(lab)}\n{lab.diagnostics()}"
            )
        if probe():
            return started - since
        time.sleep(0.02)


def failed_open(lab: Lab, cluster: str, count: int) -> bool:
    return lab.metric(cluster, "meshd_failed_open_services") == count


def db_is(lab: Lab, cluster: str, *clusters: str) -> bool:
    answer = lab.answer(cluster, DB)
    return answer is not None and answer.addresses == {DB_OF[c] for c in clusters}


def test_cut_link_drops_south_fails_open_and_heals(healthy_lab: Lab) -> None:
    lab = healthy_lab
    bounds = lab.settings
    cut_at = time.monotonic()
    lab.isolate("south")
    for c in ("east", "west"):
        within(
            lab,
            f"{c} drops south",
            functools.partial(db_is, lab, c, "east", "west"),
            cut_at,
            bounds.drop_bound_s,
        )
    within(
        lab,
        "south drops east and west",
        lambda: db_is(lab, "south", "south"),
        cut_at,
        bounds.drop_bound_s,
    )
    for c in ("east", "west"):
        assert lab.answer(c, CHECKOUT) == ok("10.3.4.10"), f"{c} does not fail open"
        within(
            lab,
            f"{c} counts checkout failed open",
            functools.partial(failed_open, lab, c, 1),
            time.monotonic(),
            METRIC_LAG_S,
        )
        assert lab.answer(c, WEB) == EXPECTED[c][WEB], "web lost with south"
    healed_at = time.monotonic()
    lab.heal()
    within(
        lab,
        "every answer back as before",
        lambda: snapshot(lab) == EXPECTED,
        healed_at,
        bounds.return_bound_s,
    )
    for c in lab.agents:
        within(
            lab,
            f"{c} counts nothing failed open",
            functools.partial(failed_open, lab, c, 0),
            time.monotonic(),
            METRIC_LAG_S,
        )


def test_service_unexported_behind_a_partition_is_not_resurrected(healthy_lab: Lab) -> None:
    lab = healthy_lab
    cut_at = time.monotonic()
    lab.isolate("south")
    within(
        lab,
        "east drops south",
        lambda: db_is(lab, "east", "east", "west"),
        cut_at,
        lab.settings.drop_bound_s,
    )
    manifest = lab.agents["south"].manifests / "shop.yaml"
    text = manifest.read_text()
    export = "kind: ServiceExport\nmetadata:\n  name: checkout\n"
    assert export in text
    manifest.write_text(text.replace(export, "kind: ConfigMap\nmetadata:\n  name: checkout\n"))
    gone = Answer("NXDOMAIN", frozenset())
    within(
        lab,
        "south stops answering checkout",
        lambda: lab.answer("south", CHECKOUT) == gone,
        time.monotonic(),
        3.0,
    )
    # Behind the partition, east and west still fail open with what they last knew.
    assert lab.answer("east", CHECKOUT) == ok("10.3.4.10")
    healed_at = time.monotonic()
    lab.heal()
    expected = {c: {**answers, CHECKOUT: gone} for c, answers in EXPECTED.items()}
    within(
        lab,
        "every answer as before, less checkout",
        lambda: snapshot(lab) == expected,
        healed_at,
        lab.settings.return_bound_s,
    )


def test_five_percent_loss_and_20ms_delay_never_drop_a_cluster(healthy_lab: Lab) -> None:
    lab = healthy_lab
    lab.degrade(loss=0.05, delay_s=0.020)
    incomplete: list[tuple[float, str, str]] = []
    polls = 0
    start = time.monotonic()
    tick = start
    try:
        while time.monotonic() - start < 20.0:
            for c in lab.agents:
                answer = lab.answer(c, DB)
                polls += 1
                if answer is None or answer.addresses != ALL_DB:
                    incomplete.append((round(time.monotonic() - start, 2), c, str(answer)))
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        lab.heal()
    lost = sum(n for (_a, _b, outcome), n in lab.emulator.counts().items() if outcome == "lost")
    assert lost > 0, "the links lost nothing: the test did not test"
    assert polls >= 3 * 150, f"only {polls} polls in 20 s"
    assert not incomplete, (
        f"{len(incomplete)} of {polls} answers incomplete: {incomplete[:20]}\n"
        + (lab.diagnostics())
    )


def test_killed_agent_leaves_answers_and_returns_after_restart(healthy_lab: Lab) -> None:
    lab = healthy_lab
    killed_at = time.monotonic()
    lab.agents["south"].kill()
    for c in ("east", "west"):
        within(
            lab,
            f"{c} drops killed south",
            functools.partial(db_is, lab, c, "east", "west"),
            killed_at,
            lab.settings.drop_bound_s,
        )
        assert lab.answer(c, CHECKOUT) == ok("10.3.4.10"), f"{c} does not fail open"
    lab.start("south")
    lab.wait_ready("south")
    ready_at = time.monotonic()
    within(
        lab,
        "south back in every answer",
        lambda: snapshot(lab) == EXPECTED,
        ready_at,
        lab.settings.return_bound_s,
    )


def test_one_way_cut_separates_only_that_pair(healthy_lab: Lab) -> None:
    lab = healthy_lab
    bounds = lab.settings
    cut_at = time.monotonic()
    lab.cut("south", "east", both_ways=False)
    false_drops: list[tuple[float, str, Answer | None]] = []

    def pair_separated() -> bool:
        # Whatever else happens, west keeps all three, and nobody drops west.
        for c, must in (("west", ALL_DB), ("east", {DB_OF["west"]}), ("south", {DB_OF["west"]})):
            answer = lab.answer(c, DB)
            if answer is None or not must <= answer.addresses:
                false_drops.append((round(time.monotonic() - cut_at, 2), c, answer))
        return db_is(lab, "east", "east", "west") and db_is(lab, "south", "south", "west")

    within(lab, "east and south drop each other", pair_separated, cut_at, bounds.drop_bound_s)
    watch_until = time.monotonic() + 2.0  # and it stays that way, with no false drop
    while time.monotonic() < watch_until:
        assert pair_separated(), f"the separation did not hold\n{lab.diagnostics()}"
        time.sleep(0.05)
    assert not false_drops, f"{false_drops[:10]}\n{lab.diagnostics()}"
    healed_at = time.monotonic()
    lab.heal()
    within(
        lab,
        "every answer back as before",
        lambda: snapshot(lab) == EXPECTED,
        healed_at,
        bounds.return_bound_s,
    )
