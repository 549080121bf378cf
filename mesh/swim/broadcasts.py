"""The queue of membership updates waiting to be piggybacked (memberlist's
``TransmitLimitedQueue``).

Rules:

- one pending update per member: a newer update about a member replaces the older one (it
  supersedes it, whatever the older one's transmit count);
- ``take`` picks the updates sent the fewest times first, newest first among equals, so a
  fresh update goes out on the very next message;
- each update is sent in at most ``limit`` messages (``retransmit_mult * ceil(log10(N+1))``,
  computed by the caller from the current N), then dropped: an epidemic needs O(log N)
  transmissions per member to reach everyone, and the bound keeps messages small.

Pure, no clock: the caller decides when messages go out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.swim.messages import Update


@dataclass(slots=True)
class _Pending:
    update: Update
    transmits: int
    order: int


class BroadcastQueue:
    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._pending

    def push(self, update: Update) -> None:
        self._order += 1
        self._pending[update.member_id] = _Pending(update, 0, self._order)

    def take(self, max_count: int, limit: int) -> tuple[Update, ...]:
        """Up to ``max_count`` updates for one message; counts the transmission."""
        if not self._pending:
            return ()
        chosen = sorted(self._pending.values(), key=lambda p: (p.transmits, -p.order))
        chosen = chosen[:max_count]
        for pending in chosen:
            pending.transmits += 1
            if pending.transmits >= limit:
                del self._pending[pending.update.member_id]
        return tuple(p.update for p in chosen)

    def clear(self) -> None:
        self._pending.clear()
