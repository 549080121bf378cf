"""The agent's one garbage-collector policy: long-lived data out of the collector's reach,
and young collections rare enough for bursts of allocation.

Why: CPython's cyclic collector stops the event loop, which is the DNS server, for as long
as a collection takes. A full (oldest-generation) collection walks every tracked object,
and it starts whenever that generation has grown by a quarter since the last. An agent's
heap is mostly long-lived and only grows with the clusterset: the catalog's services and
endpoints, the ring's records, the zone's encoded answers. With 20,000 services that is
about a million objects, and one pass over them stopped the loop for 0.2 to 0.6 s on a busy
two-core host (``bench/RESULTS.md``); ``bench/tail_probe.py`` measured 22 to 33 ms full
collections at start-up with only 1,000 services. (An idle agent answering queries allocates
almost no tracked objects: no collection at all during 5 s at 10,000 q/s.)

The policy, all in ``HeapSettler``:

- **Freeze what lives.** ``gc.freeze()`` (constant time) moves every live object to the
  permanent generation, which no collection walks, so a collection costs what was made since
  the last freeze, not what the heap holds. The agent freezes once when it has started
  (modules, gRPC, settings); then, while data moves, each time ``FREEZE_EVERY`` services'
  worth of long-lived objects have been made (``made``: merged from the source, changed in
  the catalog by the source or the ring, published as records, planned into the zone), so
  no pass ever examines more than that; and once after the first zone rebuild once synced
  (``rebuilt``), which settles the start-up data whatever its size.
- **Before each freeze, clear the young cyclic garbage** (``gc.collect(1)``: it walks only
  the two young generations), so that what a freeze can keep alive for good is cyclic
  garbage that had already reached the oldest generation: at most what one batch of
  ``FREEZE_EVERY`` services left in cycles (objects without cycles are freed by reference
  counting, frozen or not).
- **Fewer young collections** (``tune``, once per process, from the runner): the first
  generation's threshold goes from CPython's 700 allocations to ``GEN0_THRESHOLD``, so a
  rebuild's burst of allocations triggers tens of young collections instead of hundreds.
  Young collections stay short: they walk only objects allocated since the last one.

Under churn (a manifests file rewritten every second) this took collections per 5 s load
from about 90 (one full collection of about 60 ms) to 8 (``bench/RESULTS.md``).
"""

from __future__ import annotations

import gc

FREEZE_EVERY = 1000  # services made between two freezes: bounds one collector pass
GEN0_THRESHOLD = 7000  # CPython's default is 700; its gen1 and gen2 thresholds stay 10


def tune() -> None:
    """Raise the young generation's threshold (process-wide; never lowers one set higher)."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)


class HeapSettler:
    """Counts long-lived data made and freezes the heap when the policy says so."""

    def __init__(self, every: int = FREEZE_EVERY) -> None:
        self.every = every
        self.freezes = 0
        self.settled_after_sync = False
        self._made = 0

    def made(self, services: int) -> None:
        """``services`` services' worth of long-lived objects were just made."""
        self._made += services
        if self._made >= self.every:
            self.freeze()

    def rebuilt(self, elapsed_s: float, synced: bool) -> None:
        """A zone rebuild of ``elapsed_s`` finished; the first one once synced settles the
        start-up data (however long it took: the size of what it made is what counts)."""
        if synced and not self.settled_after_sync:
            self.settled_after_sync = True
            self.freeze()

    def freeze(self) -> None:
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        self._made = 0
