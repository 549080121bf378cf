"""A service's routing policy, read from its ServiceExport's ``meshd.io/`` annotations (pure).

The annotations of the oldest export win when clusters disagree (``mesh.routing.view``),
like the type and the ports. What each one means (README, "Routing policy"):

- ``meshd.io/affinity: local | remote | none`` (Cilium's words): ``local`` (the default)
  answers from this cluster, then its region, then the rest; ``remote`` from the other
  clusters first (their region order kept) and this cluster last; ``none`` from every
  cluster as one tier.
- ``meshd.io/failover-order: a,b|c,d``: explicit tiers, in order; ``|`` puts several in one
  tier; a name is a cluster, else a region (a name that is both means the cluster);
  clusters not named form a last tier.
- ``meshd.io/failover: us-east=eu-west,...`` (Istio's ``localityLbSetting.failover``): an
  importer in ``us-east`` with nothing healthy in its own region tries ``eu-west`` next,
  before the rest. With ``failover-order`` too, ``failover-order`` wins (reported).
- ``meshd.io/weights: c1=70,c2=30``: the share of answers led by each cluster of a tier;
  clusters not named weigh 0, which never blocks failover.
- ``meshd.io/max-answers: N`` (1-64): address records per family, default
  ``--max-addresses``.
- ``meshd.io/min-healthy: N | P%``: a tier with fewer ready endpoints than N (or than P% of
  its endpoints) also takes the next tier's.
- ``meshd.io/ttl: SECONDS`` (0-3600): the TTL of the service's answers.
- ``meshd.io/answer-mode: endpoints | cluster-ip | clusterset-ip``: what a ClusterSetIP
  service's A/AAAA answer (``mesh.routing.modes``); default ``--answer-mode``.

A bad value never breaks answers: that one setting takes its default and a ``Problem``
says why (the agent logs it once and counts it in ``meshd_policy_problems_total``).
Unknown ``meshd.io/`` keys are reported too, so a typo does not go unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mesh.model import ANNOTATION_PREFIX, is_dns_label

AFFINITIES = ("local", "remote", "none")
ANSWER_MODES = ("endpoints", "cluster-ip", "clusterset-ip")
MAX_WEIGHT = 1_000_000
MAX_ANSWERS = 64
MAX_TTL = 3600
KNOWN = frozenset(
    ANNOTATION_PREFIX + name
    for name in (
        "affinity",
        "failover-order",
        "failover",
        "weights",
        "max-answers",
        "min-healthy",
        "ttl",
        "answer-mode",
    )
)
_EMPTY: Mapping[str, int] = MappingProxyType({})
_EMPTY_TEXT: Mapping[str, str] = MappingProxyType({})
_INTEGER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class MinHealthy:
    """A tier is healthy enough with at least ``count`` ready endpoints, or (``percent``)
    at least ``count`` percent of its endpoints ready."""

    count: int
    percent: bool

    def met(self, ready: int, total: int) -> bool:
        if self.percent:
            return total > 0 and ready * 100 >= self.count * total
        return ready >= self.count


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    affinity: str = "local"
    failover_order: tuple[tuple[str, ...], ...] = ()  # tiers of cluster or region names
    failover: Mapping[str, str] = field(default_factory=lambda: _EMPTY_TEXT)  # region -> region
    weights: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # cluster -> weight
    max_answers: int | None = None
    min_healthy: MinHealthy | None = None
    ttl: int | None = None
    answer_mode: str | None = None  # one of ANSWER_MODES; None: the agent's --answer-mode


DEFAULT_POLICY = ServicePolicy()


@dataclass(frozen=True, slots=True)
class Problem:
    """One annotation that was not used: ``reason`` is a metric label, ``message`` a line."""

    reason: str
    message: str


def parse_policy(annotations: Iterable[tuple[str, str]]) -> tuple[ServicePolicy, list[Problem]]:
    """The policy the annotations ask for, and what in them could not be used."""
    values = dict(annotations)
    if not values:
        return DEFAULT_POLICY, []
    problems: list[Problem] = []
    for key in sorted(values):
        if key not in KNOWN:
            problems.append(Problem("unknown_annotation", f"{key} is not a meshd annotation"))
    affinity = _affinity(values, problems)
    order = _failover_order(values, problems)
    failover = _failover(values, problems)
    if order and failover:
        problems.append(
            Problem("conflict", "meshd.io/failover-order and meshd.io/failover: the order wins")
        )
        failover = _EMPTY_TEXT
    policy = ServicePolicy(
        affinity=affinity,
        failover_order=order,
        failover=failover,
        weights=_weights(values, problems),
        max_answers=_bounded(values, "max-answers", 1, MAX_ANSWERS, problems),
        min_healthy=_min_healthy(values, problems),
        ttl=_bounded(values, "ttl", 0, MAX_TTL, problems),
        answer_mode=_answer_mode(values, problems),
    )
    return (DEFAULT_POLICY if policy == DEFAULT_POLICY else policy), problems


def _bad(problems: list[Problem], name: str, value: str, rule: str) -> None:
    shown = value if len(value) <= 80 else value[:77] + "..."
    problems.append(
        Problem(f"bad_{name.replace('-', '_')}", f"{ANNOTATION_PREFIX}{name}: {shown!r} {rule}")
    )


def _affinity(values: Mapping[str, str], problems: list[Problem]) -> str:
    value = values.get(ANNOTATION_PREFIX + "affinity")
    if value is None:
        return "local"
    if value.strip() in AFFINITIES:
        return value.strip()
    _bad(problems, "affinity", value, "must be local, remote or none")
    return "local"


def _answer_mode(values: Mapping[str, str], problems: list[Problem]) -> str | None:
    value = values.get(ANNOTATION_PREFIX + "answer-mode")
    if value is None:
        return None
    if value.strip() in ANSWER_MODES:
        return value.strip()
    _bad(problems, "answer-mode", value, "must be endpoints, cluster-ip or clusterset-ip")
    return None


def _names(text: str, separator: str) -> list[str] | None:
    names = [n.strip() for n in text.split(separator)]
    return names if all(is_dns_label(n) for n in names) else None


def _failover_order(
    values: Mapping[str, str], problems: list[Problem]
) -> tuple[tuple[str, ...], ...]:
    value = values.get(ANNOTATION_PREFIX + "failover-order")
    if value is None:
        return ()
    tiers: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for item in value.split(","):
        names = _names(item, "|")
        if names is None or seen.intersection(names) or len(set(names)) != len(names):
            _bad(problems, "failover-order", value, "must be names (a|b in one tier), each once")
            return ()
        seen.update(names)
        tiers.append(tuple(names))
    return tuple(tiers)


def _failover(values: Mapping[str, str], problems: list[Problem]) -> Mapping[str, str]:
    value = values.get(ANNOTATION_PREFIX + "failover")
    if value is None:
        return _EMPTY_TEXT
    pairs: dict[str, str] = {}
    for item in value.split(","):
        names = _names(item, "=")
        if names is None or len(names) != 2 or names[0] in pairs or names[0] == names[1]:
            _bad(problems, "failover", value, "must be from-region=to-region pairs")
            return _EMPTY_TEXT
        pairs[names[0]] = names[1]
    return MappingProxyType(pairs)


def _weights(values: Mapping[str, str], problems: list[Problem]) -> Mapping[str, int]:
    value = values.get(ANNOTATION_PREFIX + "weights")
    if value is None:
        return _EMPTY
    weights: dict[str, int] = {}
    for item in value.split(","):
        names = item.split("=")
        cluster, number = (names[0].strip(), names[1].strip()) if len(names) == 2 else ("", "")
        if (
            not is_dns_label(cluster)
            or cluster in weights
            or not _INTEGER.fullmatch(number)
            or int(number) > MAX_WEIGHT
        ):
            _bad(problems, "weights", value, f"must be cluster=weight pairs, 0-{MAX_WEIGHT}")
            return _EMPTY
        weights[cluster] = int(number)
    if not any(weights.values()):
        _bad(problems, "weights", value, "gives every cluster weight 0")
        return _EMPTY
    return MappingProxyType(weights)


def _bounded(
    values: Mapping[str, str], name: str, low: int, high: int, problems: list[Problem]
) -> int | None:
    value = values.get(ANNOTATION_PREFIX + name)
    if value is None:
        return None
    text = value.strip()
    if _INTEGER.fullmatch(text) and low <= int(text) <= high:
        return int(text)
    _bad(problems, name, value, f"must be an integer {low}-{high}")
    return None


def _min_healthy(values: Mapping[str, str], problems: list[Problem]) -> MinHealthy | None:
    value = values.get(ANNOTATION_PREFIX + "min-healthy")
    if value is None:
        return None
    text = value.strip()
    percent = text.endswith("%")
    number = text[:-1] if percent else text
    if _INTEGER.fullmatch(number) and 1 <= int(number) <= (100 if percent else 1_000_000):
        return MinHealthy(int(number), percent)
    _bad(problems, "min-healthy", value, "must be a count (1 or more) or a percentage 1%-100%")
    return None
