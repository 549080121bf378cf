"""mesh.daemon.gctune: when the heap is frozen, and the collector's thresholds."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mesh.daemon import gctune


@dataclass
class FakeAgent:
    synced: bool = False
    rebuild_observers: list[Callable[[float], None]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()  # what earlier tests in this process froze (in-process agents, heap tests)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def rebuilt(agent: FakeAgent, elapsed_s: float) -> None:
    for observe in agent.rebuild_observers:
        observe(elapsed_s)


def test_freezes_after_the_first_rebuild_once_synced_and_after_big_ones() -> None:
    agent = FakeAgent()
    tuner = gctune.install(agent)
    rebuilt(agent, 1.0)  # not synced yet: start-up data still coming
    assert tuner.freezes == 0
    assert gc.get_freeze_count() == 0
    agent.synced = True
    rebuilt(agent, 0.001)  # the first rebuild after sync, however short
    assert tuner.freezes == 1
    assert gc.get_freeze_count() > 0
    rebuilt(agent, gctune.BIG_REBUILD_S / 2)
    assert tuner.freezes == 1
    frozen = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # young, tracked, alive: frozen by the next big one
    rebuilt(agent, gctune.BIG_REBUILD_S)
    assert tuner.freezes == 2
    assert gc.get_freeze_count() >= frozen + len(kept)


def test_raises_the_young_threshold_only() -> None:
    gc.set_threshold(700, 10, 10)
    gctune.install(FakeAgent())
    assert gc.get_threshold() == (gctune.GEN0_THRESHOLD, 10, 10)
    gc.set_threshold(100_000, 5, 5)
    gctune.install(FakeAgent())
    assert gc.get_threshold() == (100_000, 5, 5)
