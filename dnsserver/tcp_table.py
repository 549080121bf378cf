"""Which DNS-over-TCP connections stay open, and until when (a pure core: time is an argument).

RFC 7766 section 6.2 asks a server to protect itself from clients that hold connections
without using them. A slow-loris client sends a byte of an unfinished frame now and then: if
every byte counted as activity, and new connections were refused once the table was full,
a few hundred such connections would shut every other client out of TCP, which is the only
way to get an answer too large for UDP. So:

- idle: a connection must complete a query (a whole length-prefixed frame) within
  ``idle_timeout_s`` of opening or of its previous query. Bytes of an unfinished frame are
  not activity.
- frame: once the first byte of a frame has arrived, the whole frame must arrive within
  ``frame_timeout_s``.
- per client address: at most ``max_per_client`` connections; a new one past that is
  refused, so one address cannot fill the table.
- in all: at most ``max_connections``. When the table is full, a new connection takes the
  place of the one idle longest (whose last completed query, or opening, is the oldest):
  a real client gets in even while slow clients hold every place, and the slow clients are
  the ones that make room.

Invariants: at most ``max_connections`` entries and ``max_per_client`` per client; every
entry has a deadline (``deadline``), the earlier of its idle and frame deadlines; a
completed frame moves the idle deadline and ends the frame deadline.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


@dataclass(slots=True)
class _Entry:
    client: str
    idle_since: float  # opened, or completed its last query
    frame_since: float | None = None  # the first byte of an unfinished frame arrived


class TcpTable(Generic[C]):
    """The open connections (any hashable handle) with their client address and times."""

    def __init__(
        self,
        max_connections: int,
        max_per_client: int,
        idle_timeout_s: float,
        frame_timeout_s: float,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self._entries: dict[C, _Entry] = {}
        self._per_client: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._entries))

    def __contains__(self, conn: object) -> bool:
        return conn in self._entries

    def admit(self, conn: C, client: str, now: float) -> tuple[bool, C | None]:
        """Whether ``conn`` from ``client`` may stay, and the connection to close to make
        room for it (already forgotten here), if any."""
        if self._per_client.get(client, 0) >= self.max_per_client:
            return False, None
        evicted = None
        if len(self._entries) >= self.max_connections:
            if not self._entries:  # max_connections 0: nobody gets in
                return False, None
            evicted = min(self._entries, key=lambda c: self._entries[c].idle_since)
            self.forget(evicted)
        self._entries[conn] = _Entry(client, now)
        self._per_client[client] = self._per_client.get(client, 0) + 1
        return True, evicted

    def forget(self, conn: C) -> None:
        entry = self._entries.pop(conn, None)
        if entry is None:
            return
        left = self._per_client[entry.client] - 1
        if left:
            self._per_client[entry.client] = left
        else:
            del self._per_client[entry.client]

    def query_done(self, conn: C, now: float) -> None:
        """``conn`` completed a query: its idle time starts again, no frame is open."""
        entry = self._entries.get(conn)
        if entry is not None:
            entry.idle_since = now
            entry.frame_since = None

    def unfinished(self, conn: C, now: float, pending: bool) -> None:
        """Whether ``conn`` holds the start of a frame that has not fully arrived; the
        frame's time runs from the first time this is said after a completed one."""
        entry = self._entries.get(conn)
        if entry is None:
            return
        if not pending:
            entry.frame_since = None
        elif entry.frame_since is None:
            entry.frame_since = now

    def deadline(self, conn: C) -> float | None:
        """When ``conn`` must be closed unless it completes a query first (None: unknown)."""
        entry = self._entries.get(conn)
        if entry is None:
            return None
        due = entry.idle_since + self.idle_timeout_s
        if entry.frame_since is not None:
            due = min(due, entry.frame_since + self.frame_timeout_s)
        return due

    def expired(self, conn: C, now: float) -> str | None:
        """Why ``conn`` must be closed now (``idle`` or ``frame``), or None."""
        entry = self._entries.get(conn)
        if entry is None:
            return None
        if entry.frame_since is not None and now >= entry.frame_since + self.frame_timeout_s:
            return "frame"
        if now >= entry.idle_since + self.idle_timeout_s:
            return "idle"
        return None
