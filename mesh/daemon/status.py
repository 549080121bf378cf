"""``meshd status``: an agent's members, clusters and services as readable tables."""

from __future__ import annotations

import json
import sys
import urllib.error
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
    clusters = [["CLUSTER", "REGION", "HEALTHY", "SERVICES", "VERSION"]]
    for c in state["clusters"]:
        name = c["cluster"] + (" (this)" if c["local"] else "")
        clusters.append(
            [
                name,
                c["region"] or "-",
                "yes" if c["healthy"] else "no",
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
    if state.get("failed_open"):
        out += [
            "",
            "failing open (every exporting cluster unreachable): "
            + ", ".join(state["failed_open"]),
        ]
    return "\n".join(out)


def status(admin: str, raw: bool) -> int:
    url = f"http://{admin}/debug/state"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            state = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"meshd: error: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(state, indent=2) if raw else render(state))
    return 0
