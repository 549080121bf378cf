"""mesh.daemon.heap, the agent's one collector policy: live objects are frozen once enough
long-lived data was made and after the first synced rebuild, young cyclic garbage is
collected before a freeze, and the young generation's threshold is raised."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mesh.daemon import heap
from mesh.daemon.heap import HeapSettler


@pytest.fixture
def thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()  # what earlier tests in this process froze (in-process agents)
    yield
    gc.unfreeze()  # give the test process its collector back
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("thawed")
def test_live_objects_are_frozen_once_enough_services_were_made() -> None:
    settler = HeapSettler(every=100)
    made = [object() for _ in range(10)]
    settler.made(60)
    assert (settler.freezes, gc.get_freeze_count()) == (0, 0)
    settler.made(40)
    assert settler.freezes == 1
    frozen = gc.get_freeze_count()
    assert frozen >= len(made)  # everything alive went to the permanent generation
    settler.made(99)
    assert settler.freezes == 1  # counted afresh from the last freeze
    settler.made(1)
    assert settler.freezes == 2


@pytest.mark.usefixtures("thawed")
def test_a_collection_does_not_examine_frozen_objects() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    keep = [Node() for _ in range(1000)]
    gc.collect()
    assert any(o is keep[0] for o in gc.get_objects(generation=2))
    HeapSettler(every=1).made(1)
    gc.collect()
    examined = [gc.get_objects(generation=g) for g in range(3)]
    assert not any(o is keep[0] for objects in examined for o in objects)  # out of reach


@pytest.mark.usefixtures("thawed")
def test_the_first_rebuild_once_synced_freezes_and_later_ones_do_not() -> None:
    settler = HeapSettler(every=1_000_000)
    settler.rebuilt(1.0, synced=False)  # start-up data still coming
    assert (settler.freezes, gc.get_freeze_count()) == (0, 0)
    settler.rebuilt(0.001, synced=True)  # the first rebuild after sync, however short
    assert settler.freezes == 1
    assert gc.get_freeze_count() > 0
    settler.rebuilt(5.0, synced=True)  # later ones are settled by what they made
    assert settler.freezes == 1


@pytest.mark.usefixtures("thawed")
def test_young_cyclic_garbage_is_collected_before_a_freeze_not_kept_for_good() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    gc.collect()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    assert gone() is not None  # reference counting alone cannot free it
    HeapSettler(every=1).made(1)
    assert gone() is None


@pytest.mark.usefixtures("thawed")
def test_tune_raises_the_young_threshold_only() -> None:
    gc.set_threshold(700, 10, 10)
    heap.tune()
    assert gc.get_threshold() == (heap.GEN0_THRESHOLD, 10, 10)
    gc.set_threshold(100_000, 5, 5)
    heap.tune()
    assert gc.get_threshold() == (100_000, 5, 5)
