"""Answers the kernel would not send (``QueryStats.send_dropped``) reach ``/metrics``, from
the agent's own server and summed over ``--dns-workers`` processes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from prometheus_client.core import Metric

from dnsserver.query import QueryStats, answer_key
from dnsserver.server import LatencyHistogram
from dnsserver.workers import DnsWorkers
from mesh.daemon.metrics import _AgentCollector


def stats(dropped: int, truncated: int = 0, reason: str | None = None) -> QueryStats:
    counted = QueryStats()
    counted.answered[answer_key(1, 0)] = 10
    counted.send_dropped, counted.truncated = dropped, truncated
    if reason:
        counted.reject(reason)
    return counted


def test_a_sum_takes_every_counter() -> None:
    total = QueryStats()
    total.add(stats(2, 1))
    total.add(stats(3, 0, "formerr"))
    assert total.answered == {answer_key(1, 0): 20}
    assert (total.send_dropped, total.truncated, total.rejected) == (5, 1, {"formerr": 1})


def test_workers_totals_sum_the_dropped_answers() -> None:
    workers = DnsWorkers(cast(Any, None), 2, lambda: ([], 0, True))
    workers.workers = [
        cast(Any, SimpleNamespace(stats=_report(stats(dropped)))) for dropped in (4, 1)
    ]
    udp, _, _, _ = workers.totals()
    assert udp.send_dropped == 5


def _report(udp: QueryStats) -> dict[str, Any]:
    return {"udp": udp, "tcp": QueryStats(), "latency": LatencyHistogram(), "connections": 0}


def test_metrics_export_the_dropped_answers() -> None:
    totals = (stats(7), QueryStats(), LatencyHistogram(), 0)
    agent = SimpleNamespace(front=SimpleNamespace(totals=lambda: totals))
    # The DNS families come first: the rest of the generator (the zone's) is not needed.
    family: Metric = next(
        m for m in _AgentCollector(cast(Any, agent))._dns() if m.name == "meshd_dns_send_dropped"
    )
    samples = family.samples
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("meshd_dns_send_dropped_total", {"transport": "udp"}, 7)
    ]
