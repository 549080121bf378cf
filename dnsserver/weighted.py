"""Weighted rotations of a ClusterSetIP answer (pure): which cluster leads each answer.

Given each cluster's address records and weight, ``weighted_rotations`` returns one
rotation per slot of a schedule: a rotation is led by an address of the slot's cluster
(each cluster's addresses taking turns), followed by the other addresses in interleaved
order, ``shown`` records in all and none twice. The schedule is a smooth weighted
round-robin (nginx's) over counts apportioned by largest remainder, at most
``MAX_SCHEDULE`` slots, so over one cycle the share of answers each cluster leads is its
weight, exact to 1/``MAX_SCHEDULE``, and no cluster leads many answers in a row. Built when
data changes; a query sends one rotation, a slice of one body (``answer.scheduled``).
"""

from __future__ import annotations

import math

MAX_SCHEDULE = 100


def schedule(weights: list[int], length: int = MAX_SCHEDULE) -> list[int]:
    """Indexes into ``weights`` (all > 0), ``length`` long at most, each index as often as
    its weight's share (largest remainder), spread evenly (smooth weighted round-robin)."""
    total = sum(weights)
    length = min(length, total // _gcd(weights))
    exact = [w * length / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: length - sum(counts)]:
        counts[i] += 1
    current = [0] * len(counts)
    order = []
    for _ in range(length):
        for i, count in enumerate(counts):
            current[i] += count
        best = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[best] -= length
        order.append(best)
    return order


def _gcd(numbers: list[int]) -> int:
    result = 0
    for n in numbers:
        result = math.gcd(result, n)
    return max(result, 1)


def weighted_rotations(groups: list[tuple[list[bytes], int]], shown: int) -> list[list[bytes]]:
    """The rotations (see the module docstring) of ``groups``: (records, weight > 0)."""
    interleaved = [
        g[0][i] for i in range(max(len(g[0]) for g in groups)) for g in groups if i < len(g[0])
    ]
    shown = min(shown, len(interleaved))
    cursors = [0] * len(groups)
    rotations = []
    for index in schedule([w for _, w in groups]):
        records = groups[index][0]
        leader = records[cursors[index] % len(records)]
        cursors[index] += 1
        start = interleaved.index(leader)
        rest = interleaved[start + 1 :] + interleaved[:start]
        rotations.append([leader, *rest[: shown - 1]])
    return rotations
