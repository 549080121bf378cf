"""``meshd status``: an agent's members, clusters and services as readable tables; with
``--service NS/NAME``, one service explained (``/debug/service``): its tiers, weights and
health as the agent sees them, and why each cluster left out is out."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render(state: dict[str, Any]) -> str:
    out = [
        f"cluster {state['cluster']}  ready: {'yes' if state['ready'] else 'no'}  "
        f"gossip address: {state['self']}",
        "",
    ]
    members = [["MEMBER", "CLUSTER", "REACHABLE", "LAST ANSWER"]]
    for m in state["members"]:
        ago = (
            "never" if m["last_ok_seconds_ago"] is None else f"{m['last_ok_seconds_ago']:.1f}s ago"
        )
        members.append([m["address"], m["cluster"] or "?", "yes" if m["reachable"] else "no", ago])
    clusters = [["CLUSTER", "REGION", "HEALTHY", "DRAINED", "SERVICES", "VERSION"]]
    for c in state["clusters"]:
        name = c["cluster"] + (" (this)" if c["local"] else "")
        drain = c.get("drain") or {}
        drained = "no"
        if drain.get("drained"):
            drained = f"yes ({drain['reason']})" if drain.get("reason") else "yes"
        clusters.append(
            [
                name,
                c["region"] or "-",
                "yes" if c["healthy"] else "no",
                drained,
                str(c["services"]),
                f"{c['generation']}/{c['version']}",
            ]
        )
    services = [["SERVICE", "TYPE", "READY ENDPOINTS BY CLUSTER"]]
    for key, svc in sorted(state["services"].items()):
        per = ", ".join(
            f"{c}={v['ready']}/{v['endpoints']}" for c, v in sorted(svc["clusters"].items())
        )
        services.append([key, svc["type"], per])
    out += [_table(members), "", _table(clusters), "", _table(services)]
    if state.get("drained"):
        out += ["", "drained (no traffic): " + ", ".join(state["drained"])]
    if state.get("failed_open"):
        out += [
            "",
            "failing open (every exporting cluster unreachable): "
            + ", ".join(state["failed_open"]),
        ]
    return "\n".join(out)


_STATES = {
    "first_tier": "answering from its first tier",
    "later_tier": "answering from a failover tier",
    "failed_open": "failing open: no healthy, undrained cluster has a ready endpoint",
}


def _policy_line(policy: dict[str, Any]) -> str:
    parts = [f"affinity {policy['affinity']}"]
    if policy["failover_order"]:
        parts.append(f"failover-order {policy['failover_order']}")
    if policy["failover"]:
        parts.append("failover " + ",".join(f"{a}={b}" for a, b in policy["failover"].items()))
    if policy["weights"]:
        parts.append("weights " + ",".join(f"{c}={w}" for c, w in policy["weights"].items()))
    if policy["max_answers"] is not None:
        parts.append(f"max answers {policy['max_answers']}")
    if policy["min_healthy"]:
        parts.append(f"min healthy {policy['min_healthy']}")
    parts.append(f"TTL {policy['ttl_s']} s")
    return "; ".join(parts)


def render_service(found: dict[str, Any]) -> str:
    """``meshd status --service``: the explanation as a table."""
    out = [
        f"{found['service']} as {found['cluster']} sees it: {found['type']}, "
        f"{_STATES.get(found['state'], found['state'])}",
        f"policy (from {found['oldest_export']}'s export): {_policy_line(found['policy'])}",
    ]
    out += [f"problem: {p['message']}" for p in found["problems"]]
    if not found.get("namespace_here", True):
        out.append(f"not answered here: namespace missing in {found['cluster']}")
    rows = [
        ["TIER", "CLUSTER", "REGION", "WEIGHT", "SHARE", "READY", "HEALTH", "DRAINED", "IN ANSWERS"]
    ]
    for tier in found["tiers"]:
        for c in tier["clusters"]:
            rows.append(
                [
                    str(tier["tier"]),
                    c["cluster"],
                    c["region"] or "-",
                    "-" if c["weight"] is None else str(c["weight"]),
                    "-" if c["share"] is None else f"{c['share']:.0%}",
                    f"{c['ready']}/{c['endpoints']}",
                    c["health"],
                    "yes" if c["drained"] else "no",
                    "yes" if c["answering"] else f"no: {c['why']}",
                ]
            )
    out += ["", _table(rows)]
    if found["left_out"]:
        left = ", ".join(f"{e['cluster']} ({e['why']})" for e in found["left_out"])
        out += ["", f"left out: {left}"]
    if found.get("drained_used"):
        out.append("a drained cluster answers: nothing else is left (fail open)")
    return "\n".join(out)


def _read(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0, json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        print(f"meshd: error: {url}: HTTP {exc.code} {detail}".rstrip(), file=sys.stderr)
        return 1, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"meshd: error: cannot read {url}: {exc}", file=sys.stderr)
        return 1, None


def status(admin: str, raw: bool, service: str | None = None) -> int:
    if service is not None:
        name = urllib.parse.quote(service, safe="/")
        code, found = _read(f"http://{admin}/debug/service?name={name}")
        if not code:
            print(json.dumps(found, indent=2) if raw else render_service(found))
        return code
    code, state = _read(f"http://{admin}/debug/state")
    if not code:
        print(json.dumps(state, indent=2) if raw else render(state))
    return code
