"""When, and to which seeds, an agent that knows no live member retries its join; how many
members held dead it may push-pull with because the ring's transport just reached them.

Theory of operation. ``Membership.start`` push-pulls with every seed at once, so a ring
started together assembles in one round trip. While the agent still knows nobody alive
(its seeds not up yet, or every member it knew declared dead), it tries again: each retry
push-pulls with ``join_fanout`` seeds picked at random (not all of them), and the wait
before the next retry doubles from ``join_retry_interval_s`` up to ``join_retry_max_s``;
it starts short again once the agent has heard from a live member.

Why not every seed every second: on an overloaded host (many agents on few cores) every
probe times out, so every agent ends up holding every other dead and alone. Retrying every
seed each second then sends N - 1 full-state push-pulls per agent per second, N^2 in all,
and that load is what keeps the host overloaded: measured, 21,000 of one agent's 22,000
SWIM messages in five minutes of a 50-agent ring on 2 cores were such retries, all timed
out. A few seeds per retry and a growing wait keep a lonely agent's cost bounded; any one
live seed brings the whole membership back (its push-pull answer lists every member).

The same reasoning bounds ``Membership.reached``: a member we hold dead whose address the
ring's own exchange just reached is pulled at once (a healed link rejoins within a round
trip), each at most once a probe interval as before, but ``join_fanout`` members per
interval in all (the interval stretched by the local health score while it is at half its
range or more: an agent sure it is overloaded). On the same overloaded host SWIM held
most members dead while the ring still reached them, and pulling each every half second
was the next flood. One pull is enough for the whole ring anyway: the member refutes, and
its refutation spreads by gossip.

Pure: ``now`` comes in, seeds go out; randomness from the caller's seeded ``Rng``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from mesh.swim.config import Config, Rng


class JoinSchedule:
    """The seed addresses, and the next lonely retry's time and wait."""

    __slots__ = ("_config", "_reached", "_rng", "_wait_s", "next_at", "seeds")

    def __init__(self, config: Config, rng: Rng) -> None:
        self._config = config
        self._rng = rng
        self.seeds: list[str] = []
        self.next_at = math.inf
        self._wait_s = config.join_retry_interval_s
        self._reached: deque[float] = deque()  # when members held dead were last pulled

    def add(self, seeds: Iterable[str], me: str, now: float) -> list[str]:
        """Seed addresses (``me``, our own, and those known already left out); returns the
        new ones, which the caller contacts now. The next retry comes soon."""
        new = [s for s in dict.fromkeys(seeds) if s != me and s not in self.seeds]
        self.seeds += new
        self.heard_from_a_member(now)
        return new

    def heard_from_a_member(self, now: float) -> None:
        """Not alone (now): once alone, the first retry waits the shortest time from the
        last call of this."""
        self._wait_s = self._config.join_retry_interval_s
        self.next_at = now + self._wait_s

    def retry(self, now: float) -> list[str]:
        """The seeds to push-pull with now, when alone and a retry is due; the wait before
        the next one doubles."""
        if now < self.next_at or not self.seeds:
            return []
        self._wait_s = min(self._wait_s * 2, self._config.join_retry_max_s)
        self.next_at = now + self._wait_s
        return self._rng.sample(self.seeds, min(self._config.join_fanout, len(self.seeds)))

    def reach_budget(self, now: float, window_s: float) -> int:
        """How many more members held dead may be pulled now: ``join_fanout`` in any
        ``window_s``."""
        while self._reached and self._reached[0] <= now - window_s:
            self._reached.popleft()
        return max(0, self._config.join_fanout - len(self._reached))

    def reached(self, now: float) -> None:
        """A member held dead was pulled now."""
        self._reached.append(now)
