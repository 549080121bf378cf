"""The heap settler freezes live objects once enough long-lived data was made, so that no
collector pass examines more than what was made since."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mesh.daemon.heap import HeapSettler


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # give the test process its collector back


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
