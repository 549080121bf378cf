"""Short garbage-collector pauses with a large catalog: long-lived data out of the
collector's reach.

CPython's cyclic garbage collector examines every tracked object of its oldest generation
in one pass, which it starts whenever that generation has grown by a quarter since the
last. An agent holding 20,000 services holds about a million such objects (the catalog's
services and endpoints, the ring's records, the zone's answers): one pass over them stops
the event loop for 0.2 to 0.6 s on a busy two-core host, a few times while a large source
load or catch-up grows the heap, and again later (``bench/RESULTS.md``).

``HeapSettler`` counts the long-lived objects the agent makes, in services (merged from the
source, changed in the catalog by the source or the ring, published as records, planned
into the zone), and each time ``FREEZE_EVERY`` have been made it moves every live object to
the permanent generation (``gc.freeze``: constant time), which later passes skip. So no
pass examines more than what was made since the last freeze. The agent also freezes once
when it has started (modules, gRPC, settings).

The price: reference cycles that are alive at a freeze and become garbage later are never
collected (objects without cycles are freed by reference counting, frozen or not). Freezes
happen only while data moves, at most one per ``FREEZE_EVERY`` services, and what lives in
cycles at such a moment is the loop's own state (tasks, futures, calls in flight): a few
thousand objects per freeze, once (``bench/RESULTS.md`` has the measured figure).
"""

from __future__ import annotations

import gc

FREEZE_EVERY = 1000  # services made between two freezes: bounds one collector pass


class HeapSettler:
    def __init__(self, every: int = FREEZE_EVERY) -> None:
        self.every = every
        self.freezes = 0
        self._made = 0

    def made(self, services: int) -> None:
        """``services`` services' worth of long-lived objects were just made."""
        self._made += services
        if self._made >= self.every:
            self.freeze()

    def freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
        self._made = 0
