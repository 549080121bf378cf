"""Lifeguard's two local mechanisms: dynamic suspicion timeouts and local health.

From "Lifeguard: Local Health Awareness for More Accurate Failure Detection" (Dadgar,
Phillips, Currey; HashiCorp 2018), as hashicorp/memberlist implements them
(``suspicion.go``, ``awareness.go``).

``Suspicion`` is the timer of one suspected member. It starts at ``max_s`` and shrinks
toward ``min_s`` as *independent* members confirm the suspicion (each source counts once,
the first accuser included), following

    timeout(n) = max(min_s, max_s - (max_s - min_s) * log(n + 1) / log(k + 1))

measured from when this agent started suspecting, so the k-th confirmation brings it to
``min_s``. With k = 0 (too few members to confirm) the timer is ``min_s`` from the start.
The idea: an agent that alone suspects a member may be the one with the problem, so it waits
long; when several others see the same, the member is very likely down.

``Awareness`` is this agent's health score, 0 (healthy) to ``max_multiplier - 1``. It rises
when the evidence says *we* are the slow one (a probe failed with no nacks from the relays,
we had to refute a suspicion of ourselves, our timers ran late) and falls with each
successful probe. Probe interval and timeout are multiplied by ``score + 1``, so an agent
whose event loop lags probes less often and waits longer before accusing anyone.

Pure: the caller passes ``now``.
"""

from __future__ import annotations

import math


def suspicion_remaining_s(n: int, k: int, elapsed_s: float, min_s: float, max_s: float) -> float:
    """Time left before a suspicion with n of k confirmations expires (may be negative)."""
    if k < 1:
        return min_s - elapsed_s
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_s - frac * (max_s - min_s)
    timeout = max(min_s, math.floor(1000.0 * raw) / 1000.0)
    return timeout - elapsed_s


class Suspicion:
    """The suspicion timer of one member; ``deadline`` is when it turns into dead."""

    __slots__ = ("confirmations", "deadline", "k", "max_s", "min_s", "n", "started_at")

    def __init__(self, source: str, k: int, min_s: float, max_s: float, started_at: float):
        self.k = k
        self.min_s = min_s
        self.max_s = max_s
        self.started_at = started_at
        self.n = 0
        # The first accuser is not a confirmation: its own suspicion may come back to it.
        self.confirmations = {source}
        self.deadline = started_at + suspicion_remaining_s(0, k, 0.0, min_s, max_s)

    def confirm(self, source: str) -> bool:
        """Count an independent confirmation; True when it was new (worth re-gossiping)."""
        if self.n >= self.k or source in self.confirmations:
            return False
        self.confirmations.add(source)
        self.n += 1
        remaining = suspicion_remaining_s(self.n, self.k, 0.0, self.min_s, self.max_s)
        self.deadline = self.started_at + remaining
        return True


class Awareness:
    """This agent's health score and the timeout scaling it implies."""

    __slots__ = ("max_multiplier", "score")

    def __init__(self, max_multiplier: int) -> None:
        self.max_multiplier = max_multiplier
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max_multiplier - 1)

    def scale(self, timeout_s: float) -> float:
        return timeout_s * (self.score + 1)

    def scale_when_overloaded(self, interval_s: float) -> float:
        """``scale`` once the score is at half its range or more, else ``interval_s``: for
        work that only an agent with strong evidence of its own overload should shed (one
        refutation or a late timer must not slow the spreading of its own news)."""
        overloaded = 2 * (self.score + 1) >= self.max_multiplier
        return self.scale(interval_s) if overloaded else interval_s
