"""``meshd drill``'s decisions with literal times (``mesh.daemon.drill_plan``), the drain
record kept in ``--state-dir``, and who may write to the admin server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mesh.daemon.admin_routing import loopback, service_key
from mesh.daemon.announce import (
    DRAIN_FILE,
    Announcer,
    DrainNotKeptError,
    admin_address,
    drain_from_json,
    drain_to_json,
    load_drain,
    save_drain,
)
from mesh.daemon.drill_plan import (
    SETTLE_S,
    DrillRefusedError,
    Member,
    Watch,
    choose_service,
    members_of,
    own_addresses,
    passed,
    render,
    report,
)
from mesh.daemon.settings import AgentSettings
from mesh.model import NOT_DRAINED, ClusterState, Drain, ServiceKey
from mesh.ring.catalog import Catalog, Change


def view(**services: dict[str, int]) -> dict[str, Any]:
    """A /debug/state with east, west (healthy) and south (unreachable)."""
    return {
        "clusters": [
            {"cluster": "east", "healthy": True},
            {"cluster": "west", "healthy": True},
            {"cluster": "south", "healthy": False},
        ],
        "drained": [],
        "services": {
            key.replace("_", "/"): {
                "clusters": {c: {"ready": n, "endpoints": max(n, 1)} for c, n in ready.items()}
            }
            for key, ready in services.items()
        },
    }


def test_the_first_service_with_somewhere_to_fail_over_is_chosen() -> None:
    state = view(
        shop_a={"east": 1},  # east alone
        shop_b={"east": 0, "west": 2},  # east has no ready endpoint
        shop_c={"east": 1, "south": 1},  # south is unreachable
        shop_d={"east": 2, "west": 1},
        shop_e={"east": 1, "west": 1},
    )
    assert choose_service(state, "east", None) == "shop/d"
    assert choose_service(state, "east", "shop/e") == "shop/e"


@pytest.mark.parametrize(
    ("cluster", "wanted", "message"),
    [
        ("north", None, "no cluster 'north'"),
        ("east", "shop/a", "no other healthy cluster"),
        ("east", "shop/b", "east has no ready endpoint"),
        ("east", "shop/zzz", "east does not export shop/zzz"),
        ("west", "shop/a", "west does not export shop/a"),
    ],
)
def test_a_drill_that_cannot_run_is_refused(cluster: str, wanted: str | None, message: str) -> None:
    state = view(shop_a={"east": 1}, shop_b={"east": 0, "west": 2})
    with pytest.raises(DrillRefusedError, match=message):
        choose_service(state, cluster, wanted)


def test_no_service_to_fail_over_to_and_a_cluster_drained_already_are_refused() -> None:
    with pytest.raises(DrillRefusedError, match="nothing to fail over to"):
        choose_service(view(shop_a={"east": 1}), "east", None)
    drained = view(shop_d={"east": 1, "west": 1}) | {"drained": ["east"]}
    with pytest.raises(DrillRefusedError, match="drained already"):
        choose_service(drained, "east", None)
    other_drained = view(shop_d={"east": 1, "west": 1}) | {"drained": ["west"]}
    with pytest.raises(DrillRefusedError, match="nothing to fail over to"):
        choose_service(other_drained, "east", None)


def test_own_addresses_are_those_no_other_cluster_has() -> None:
    found = {"east": ["10.1.0.1", "10.9.9.9"], "west": ["10.9.9.9"]}
    assert own_addresses(found, "east") == {"10.1.0.1"}
    with pytest.raises(DrillRefusedError, match="cannot show"):
        own_addresses({"east": ["10.9.9.9"], "west": ["10.9.9.9"]}, "east")


def test_members_are_the_live_agents_with_a_dns_address() -> None:
    state = {
        "agents": [
            {"cluster": "west", "replica": "b", "dns": "127.0.0.1:2", "live": True},
            {"cluster": "west", "replica": "a", "dns": "127.0.0.1:1", "live": True},
            {"cluster": "east", "replica": "", "dns": None, "live": True},
            {"cluster": "south", "replica": "", "dns": "127.0.0.1:3", "live": False},
        ]
    }
    members, missing = members_of(state)
    assert members == [Member("west", "a", "127.0.0.1:1"), Member("west", "b", "127.0.0.1:2")]
    assert missing == ["east/- announces no DNS address (an older meshd?)"]


def watch(included_before: bool = True) -> Watch:
    w = Watch(Member("west", "a", "127.0.0.1:1"))
    w.baseline(included_before, 5)
    w.baseline(None, None)  # a lost query changes nothing
    return w


def test_drained_is_the_start_of_a_settled_run_without_the_cluster() -> None:
    w = watch()
    w.draining(0.0, True)
    w.draining(0.2, False)
    w.draining(0.4, True)  # a rotation showed it again: start over
    w.draining(0.6, False)
    w.draining(0.6 + SETTLE_S / 2, None)  # no answer: neither with nor without
    assert not w.drained_done()
    w.draining(0.6 + SETTLE_S, False)
    assert w.drained_s == pytest.approx(0.6)
    w.restoring(0.1, False)
    w.restoring(0.3, None)
    w.restoring(0.5, True)
    w.restoring(0.9, False)
    assert w.restored_s == pytest.approx(0.5)
    assert w.ttl_s == 5


def test_at_the_deadline_a_run_still_going_counts_and_none_is_null() -> None:
    going, never = watch(), watch()
    going.draining(1.0, False)
    never.draining(1.0, True)
    for w in (going, never):
        w.deadline()
    assert going.drained_s == 1.0
    assert never.drained_s is None


def test_a_member_that_did_not_answer_with_the_cluster_before_moved_at_zero() -> None:
    w = watch(included_before=False)
    w.draining(0.3, False)
    w.restoring(0.2, False)
    assert (w.drained_s, w.restored_s) == (0.0, 0.0)
    silent = Watch(Member("east", "", "127.0.0.1:9"))
    silent.draining(0.3, None)
    silent.deadline()
    silent.restoring(0.3, None)
    assert (silent.drained_s, silent.restored_s) == (None, None)


def test_the_report_is_the_documented_json_and_null_fails() -> None:
    a, b = watch(), watch(included_before=False)
    b.member = Member("east", "", "127.0.0.1:2")
    a.drained_s, a.restored_s = 0.25, 0.5
    b.drained_s, b.restored_s = 0.0, 0.0
    doc = report("east", "shop/api", [a, b])
    assert json.loads(json.dumps(doc)) == {
        "cluster": "east",
        "service": "shop/api",
        "members": [
            {"cluster": "west", "replica": "a", "drained_s": 0.25, "restored_s": 0.5,
             "ttl_s": 5, "in_answers_before": True},
            {"cluster": "east", "replica": "", "drained_s": 0.0, "restored_s": 0.0,
             "ttl_s": 5, "in_answers_before": False},
        ],
        "max_drained_s": 0.25,
        "max_restored_s": 0.5,
    }  # fmt: skip
    assert passed(doc)
    text = render(doc, 30)
    assert "west/a  0.25       0.50" in text
    assert "5.25" in text  # worst case: drained + TTL
    assert text.endswith("passed")
    a.restored_s = None
    failed = report("east", "shop/api", [a, b])
    assert failed["max_restored_s"] is None
    assert not passed(failed)
    assert "> 30" in render(failed, 30)
    assert "FAILED" in render(failed, 30)


# --- the drain kept in --state-dir ------------------------------------------------------------


def test_a_drain_is_kept_and_read_back(tmp_path: Path) -> None:
    assert load_drain(None) == NOT_DRAINED
    assert load_drain(tmp_path) == NOT_DRAINED
    drain = Drain(True, "rollout", 1_700_000_000.5)
    save_drain(tmp_path / "state", drain)
    assert load_drain(tmp_path / "state") == drain
    assert drain_from_json(drain_to_json(drain)) == drain


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"drained": "yes", "reason": "", "at": 1}',
        '{"drained": true, "reason": 5, "at": 1}',
        '{"drained": true, "reason": "", "at": -1}',
        '{"drained": true, "reason": "", "at": true}',
        '{"drained": true, "reason": ""}',
        '{"drained": true, "reason": "", "at": 1e999}',
    ],
)
def test_a_bad_drain_file_starts_undrained(tmp_path: Path, text: str) -> None:
    (tmp_path / DRAIN_FILE).write_text(text)
    assert drain_from_json(text) is None
    assert load_drain(tmp_path) == NOT_DRAINED


# --- who may write ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.0.2.2", False),
        ("::ffff:10.0.0.5", False),
        ("fd00::2", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
    ],
)
def test_only_loopback_peers_may_write(peer: str | None, allowed: bool) -> None:
    assert loopback(peer) is allowed


def test_service_names_are_namespace_slash_name() -> None:
    assert service_key("shop/web") == ServiceKey("shop", "web")
    for bad in ("shop", "shop/", "/web", "Shop/web", "shop/web/x", "a b/c"):
        assert service_key(bad) is None


# --- keeping, then announcing ------------------------------------------------------------------


class FakeLease:
    """The Lease as ``Announcer`` sees it: an annotation read, and writes that may fail."""

    def __init__(self, fail: bool = False) -> None:
        self.notes: dict[str, str] = {}
        self.fail = fail

    def annotation(self, key: str) -> str | None:
        return self.notes.get(key)

    async def annotate(self, key: str, value: str) -> None:
        if self.fail:
            raise RuntimeError("HTTP 403: forbidden")
        self.notes[key] = value


def announcer(
    state_dir: Path | None, lease: FakeLease | None = None
) -> tuple[Announcer, list[Change]]:
    published: list[Change] = []
    settings = AgentSettings("east", None, state_dir=state_dir, admin_listen=None)
    found = Announcer(
        Catalog(ClusterState("east", 1, 0)), settings, "10.0.0.5:53", published.append
    )
    found.lease = lease  # type: ignore[assignment]
    return found, published


def test_a_drain_is_kept_then_announced(tmp_path: Path) -> None:
    lease = FakeLease()
    found, published = announcer(tmp_path, lease)
    drain = asyncio.run(found.set(True, "upgrade", wall=1_700_000_000.0))
    assert drain == Drain(True, "upgrade", 1_700_000_000.0)
    assert found.kept_in == ["state-dir", "lease"]
    assert load_drain(tmp_path) == drain
    assert drain_from_json(lease.notes["meshd.io/drain"]) == drain
    assert found.catalog.local.drain == drain
    assert len(published) == 1
    undone = asyncio.run(found.set(False, "ignored", wall=1_700_000_001.0))
    assert undone == Drain(False, "", 1_700_000_001.0)


def test_a_drain_that_cannot_be_kept_changes_nothing(tmp_path: Path) -> None:
    found, published = announcer(tmp_path, FakeLease(fail=True))
    with pytest.raises(DrainNotKeptError, match="403"):
        asyncio.run(found.set(True, "x"))
    assert load_drain(tmp_path) == NOT_DRAINED  # the state directory as it was
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    on_disk, _ = announcer(blocked)
    with pytest.raises(DrainNotKeptError, match="cannot write"):
        asyncio.run(on_disk.set(True, "x"))
    assert (found.drain, on_disk.drain) == (NOT_DRAINED, NOT_DRAINED)
    assert published == []


def test_a_newer_decision_is_adopted_from_a_sibling_or_the_lease(tmp_path: Path) -> None:
    lease = FakeLease()
    found, _ = announcer(tmp_path, lease)
    found.adopt()
    assert found.drain == NOT_DRAINED
    lease.notes["meshd.io/drain"] = drain_to_json(Drain(True, "from the lease", 5.0))
    found.adopt()
    assert found.drain == Drain(True, "from the lease", 5.0)
    assert load_drain(tmp_path) == found.drain  # kept in its own state directory too
    sibling = ClusterState("east", 1, 1, replica="b", drain=Drain(False, "", 6.0))
    found.catalog.put(sibling, None, True)
    found.adopt()
    assert found.drain == Drain(False, "", 6.0)
    lease.notes["meshd.io/drain"] = "garbage"
    found.adopt()
    assert found.drain == Drain(False, "", 6.0)


@pytest.mark.parametrize(
    ("listen", "advertise", "flag", "port", "expected"),
    [
        ("127.0.0.1:9090", None, None, None, "127.0.0.1:9090"),
        ("0.0.0.0:9090", "10.0.0.5:7946", None, None, "10.0.0.5:9090"),
        ("[::]:9090", "[fd00::5]:7946", None, None, "[fd00::5]:9090"),
        ("127.0.0.1:0", None, None, None, ""),  # not bound yet
        ("127.0.0.1:0", None, None, 40001, "127.0.0.1:40001"),
        ("0.0.0.0:9090", "10.0.0.5:7946", "192.0.2.9:19090", None, "192.0.2.9:19090"),
        (None, None, None, None, ""),
    ],
)
def test_the_admin_address_announced(
    listen: str | None, advertise: str | None, flag: str | None, port: int | None, expected: str
) -> None:
    settings = AgentSettings(
        "east", None, admin_listen=listen, advertise=advertise, admin_advertise=flag
    )
    assert admin_address(settings, advertise or "127.0.0.1:7946", port) == expected
