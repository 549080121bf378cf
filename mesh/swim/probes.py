"""Whom SWIM probes next, and whom it tries to reach again (pure).

``ProbeOrder`` is the paper's round-robin over a shuffled list (SWIM, section 4.3): every
member is probed once per cycle, in an order no observer can predict, and a new member is
inserted at a random place so that it is probed within one cycle. ``probe_next`` moves a
member to the front of what is left of the cycle (a push-pull said it is suspect or dead:
our own probe, not the rumour, decides). ``ReconnectLog`` remembers when each dead or left
member's last address was tried, so a partition heals without hammering dead addresses.
"""

from __future__ import annotations

from mesh.swim.config import Rng


class ProbeOrder:
    def __init__(self, rng: Rng) -> None:
        self.rng = rng
        self._order: list[str] = []
        self._index = 0

    @property
    def order(self) -> list[str]:
        """The member ids of this cycle (a copy)."""
        return list(self._order)

    @property
    def exhausted(self) -> bool:
        return self._index >= len(self._order)

    def take(self) -> str:
        """The next member id of the cycle; only when not ``exhausted``."""
        member_id = self._order[self._index]
        self._index += 1
        return member_id

    def reset(self, member_ids: list[str]) -> None:
        """A new cycle over ``member_ids``, shuffled."""
        self._order = member_ids
        self.rng.shuffle(self._order)
        self._index = 0

    def insert(self, member_id: str) -> None:
        """A new member, at a random place of the cycle."""
        position = int(self.rng.random() * (len(self._order) + 1))
        self._order.insert(position, member_id)
        if position < self._index:
            self._index += 1

    def probe_next(self, member_id: str) -> None:
        """``member_id`` is the next one taken (it stays once in the cycle)."""
        order = self._order
        if member_id in order[self._index :]:
            order.remove(member_id)
        elif member_id in order:  # already probed this cycle: once more
            order.remove(member_id)
            self._index -= 1
        order.insert(self._index, member_id)


class ReconnectLog:
    def __init__(self) -> None:
        self._tried: dict[str, float] = {}

    def last(self, member_id: str) -> float:
        """When ``member_id`` was last tried; -1.0 for never."""
        return self._tried.get(member_id, -1.0)

    def tried(self, member_id: str, now: float) -> None:
        self._tried[member_id] = now

    def try_now(self, member_id: str, now: float, min_interval_s: float) -> bool:
        """Note an attempt now, unless one was made in the last ``min_interval_s``; True
        when this attempt should go out."""
        last = self._tried.get(member_id)
        if last is not None and now - last < min_interval_s:
            return False
        self._tried[member_id] = now
        return True

    def forget(self, member_id: str) -> None:
        self._tried.pop(member_id, None)
