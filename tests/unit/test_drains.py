"""Drains: on the wire (signed with the cluster record, optional fields, bad values read
leniently), in the routing policy (out of every answer, in only when failing open, and
counted), in the planner, and in the explanation ``meshd status --service`` prints."""

from __future__ import annotations

import math

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from mesh.model import (
    NOT_DRAINED,
    ClusterState,
    Drain,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.ring.catalog import Catalog, Change
from mesh.ring.records import ClusterInfo, OriginLog, RecordStore
from mesh.routing.drains import cluster_drains, drained_clusters, siblings, to_adopt
from mesh.routing.explain import explain_service
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality, decide_service
from mesh.wire.codec import info_from_pb, info_to_pb
from mesh.wire.record_codec import ChunkOpener, Publisher, chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb

WEB = ServiceKey("shop", "web")
REGIONS = {"east": "us", "west": "us", "south": "eu"}
HERE = Locality("east", "us")
DRAINED = Drain(True, "maintenance", 1_700_000_000.0)


def svc(
    *addresses: str, ready: bool = True, headless: bool = False, **notes: str
) -> ExportedService:
    return ExportedService(
        WEB,
        ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP,
        (ServicePort("http", "TCP", 80),),
        tuple(Endpoint((a,), ready=ready) for a in addresses),
        0.0,
        tuple(sorted((f"meshd.io/{k.replace('_', '-')}", v) for k, v in notes.items())),
    )


def state(cid: str, service: ExportedService, drain: Drain = NOT_DRAINED) -> ClusterState:
    return ClusterState(
        cid, 1, 1, REGIONS[cid], "", frozenset({"shop"}), {WEB: service}, drain=drain
    )


def exporters(**services: ExportedService) -> list[tuple[ClusterState, ExportedService]]:
    found = [(state(c, s), s) for c, s in services.items()]
    return sorted(found, key=lambda p: (p[0].cluster_id != HERE.cluster_id, p[0].cluster_id))


# --- the wire --------------------------------------------------------------------------------


def chunk_of(st: ClusterState) -> pb.OriginChunk:
    log = OriginLog(st.cluster_id, st.replica, st.generation)
    Publisher(log, None).publish(st, Change(st.cluster_id, frozenset(st.services), True), 0.0)
    (out,), _ = RecordStore(log).select(None, 1 << 20)
    return chunk_to_pb(out, "")


def test_drain_and_addresses_travel_in_the_cluster_record() -> None:
    sent = ClusterState(
        "east", 5, 0, "us", "", frozenset({"shop"}), drain=DRAINED,
        dns_address="10.0.0.5:53", admin_address="[fd00::5]:9090",
    )  # fmt: skip
    chunk = ChunkOpener(None).open(pb.OriginChunk.FromString(chunk_of(sent).SerializeToString()), 0)
    (info,) = [r.info for r in chunk.records if r.info is not None]
    assert info == ClusterInfo(
        "us", "", frozenset({"shop"}), DRAINED, "10.0.0.5:53", "[fd00::5]:9090"
    )
    log = OriginLog("east", "", 5)
    for record in chunk.records:
        log.put(record)
        log.progress = record.version
    held = log.state()
    assert (held.drain, held.dns_address, held.admin_address) == sent.announced


def test_a_record_without_the_new_fields_is_not_drained_and_has_no_addresses() -> None:
    """What an older agent sends: fields 1-3 only."""
    old = pb.ClusterInfo(region="us", zone="", namespaces=["shop"])
    info = info_from_pb(pb.ClusterInfo.FromString(old.SerializeToString()))
    assert info == ClusterInfo("us", "", frozenset({"shop"}))
    assert info.drain == NOT_DRAINED


def _old_cluster_info_class() -> type:
    """ClusterInfo as an agent built before fields 20-24 knows it, in a pool of its own."""
    proto = descriptor_pb2.FileDescriptorProto(name="old.proto", package="meshd.gossip.v1")
    message = proto.message_type.add(name="ClusterInfo")
    for number, (name, kind, label) in enumerate(
        [("region", 9, 1), ("zone", 9, 1), ("namespaces", 9, 3)], start=1
    ):
        message.field.add(name=name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("meshd.gossip.v1.ClusterInfo")
    )


def test_an_older_agent_ignores_the_new_fields_and_relays_them_unchanged() -> None:
    new = info_to_pb(ClusterInfo("us", "a", frozenset({"shop"}), DRAINED, "10.0.0.5:53", ""))
    data = new.SerializeToString()
    old = _old_cluster_info_class().FromString(data)
    assert (old.region, old.zone, list(old.namespaces)) == ("us", "a", ["shop"])
    assert old.SerializeToString() == data  # unknown fields kept: the signature still holds


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("drain_at", math.nan, Drain(True, "r", 0.0)),
        ("drain_at", math.inf, Drain(True, "r", 0.0)),
        ("drain_at", -5.0, Drain(True, "r", 0.0)),
        ("drain_reason", "x" * 300, Drain(True, "x" * 256, 7.0)),
        ("drain_reason", "a\nb\x00c", Drain(True, "a b c", 7.0)),
    ],
)
def test_a_bad_drain_value_is_read_leniently(field: str, value: object, expected: Drain) -> None:
    msg = pb.ClusterInfo(namespaces=["shop"], drained=True, drain_reason="r", drain_at=7.0)
    setattr(msg, field, value)
    assert info_from_pb(msg).drain == expected


@pytest.mark.parametrize("address", ["", "nohostport", "10.0.0.1:0", "10.0.0.1:99999", "::1:53"])
def test_an_address_that_is_not_host_port_is_left_out(address: str) -> None:
    info = info_from_pb(pb.ClusterInfo(dns_address=address, admin_address=address))
    assert (info.dns_address, info.admin_address) == ("", "")


# --- which decision stands -----------------------------------------------------------------


def test_the_latest_decision_among_replicas_wins() -> None:
    undrained = Drain(False, "", DRAINED.at + 1)
    a = ClusterState("east", 1, 1, replica="a", drain=DRAINED)
    b = ClusterState("east", 1, 1, replica="b", drain=undrained)
    c = ClusterState("east", 1, 1, replica="c")  # never heard of either
    w = ClusterState("west", 1, 1, drain=DRAINED)
    assert cluster_drains([a, b, c, w]) == {"east": undrained, "west": DRAINED}
    assert drained_clusters([a, c, w]) == {"east", "west"}
    assert drained_clusters([a, b, c, w]) == {"west"}
    assert Drain.newest([]) == NOT_DRAINED
    tie = Drain(False, "", DRAINED.at)
    assert Drain.newest([tie, DRAINED]) == DRAINED  # a tie drains: the safe side


def test_a_replica_adopts_a_newer_decision_only() -> None:
    states = [
        ClusterState("east", 1, 1, replica="a", drain=DRAINED),
        ClusterState("east", 1, 1, replica="b"),
        ClusterState("west", 1, 1, drain=Drain(True, "", DRAINED.at + 9)),
    ]
    seen = siblings("east", states)
    assert to_adopt(NOT_DRAINED, seen) == DRAINED
    assert to_adopt(DRAINED, seen) is None
    assert to_adopt(Drain(False, "", DRAINED.at + 1), seen) is None


def test_announcing_changes_the_local_state_once() -> None:
    catalog = Catalog(ClusterState("east", 1, 0))
    change = catalog.announce(DRAINED, "10.0.0.5:53", "10.0.0.5:9090")
    assert change.announced
    assert catalog.local.drain == DRAINED
    assert catalog.local.version == 1
    assert not catalog.announce(DRAINED, "10.0.0.5:53", "10.0.0.5:9090")


# --- routing -----------------------------------------------------------------------------------


def test_a_drained_cluster_leaves_the_answers_and_the_next_one_answers() -> None:
    found = exporters(east=svc("10.1.0.1"), west=svc("10.2.0.1"), south=svc("10.3.0.1"))
    everyone = {"east", "west", "south"}
    assert decide_service(WEB, found, HERE, everyone).records.addresses == ("10.1.0.1",)
    decision = decide_service(WEB, found, HERE, everyone, drained={"east"})
    assert decision.records.addresses == ("10.2.0.1",)
    assert decision.state == "later_tier"
    assert not decision.drained_used
    both = decide_service(WEB, found, HERE, everyone, drained={"east", "west"})
    assert both.records.addresses == ("10.3.0.1",)


def test_a_drained_cluster_answers_only_when_failing_open_and_it_is_counted() -> None:
    found = exporters(east=svc("10.1.0.1"), west=svc("10.2.0.1"))
    decision = decide_service(WEB, found, HERE, {"east", "west"}, drained={"east", "west"})
    assert decision.state == "failed_open"
    assert decision.drained_used
    assert decision.records.addresses == ("10.1.0.1",)
    unreachable = decide_service(WEB, found, HERE, {"east"}, drained={"east"})
    assert unreachable.state == "failed_open"  # west unreachable, east drained: both last-known
    assert unreachable.drained_used


def test_failing_open_without_a_drained_cluster_is_not_counted_as_one() -> None:
    found = exporters(east=svc("10.1.0.1"), west=svc("10.2.0.1"))
    decision = decide_service(WEB, found, HERE, {"east"}, drained={"west"})
    assert decision.state == "first_tier"
    gone = decide_service(WEB, exporters(west=svc("10.2.0.1")), HERE, set(), drained={"east"})
    assert gone.state == "failed_open"
    assert not gone.drained_used


def test_a_drained_cluster_leaves_headless_answers_too() -> None:
    found = exporters(east=svc("10.1.0.1", headless=True), west=svc("10.2.0.1", headless=True))
    decision = decide_service(WEB, found, HERE, {"east", "west"}, drained={"west"})
    assert decision.records.addresses == ("10.1.0.1",)
    alone = decide_service(WEB, found, HERE, {"east", "west"}, drained={"east", "west"})
    assert set(alone.records.addresses) == {"10.1.0.1", "10.2.0.1"}
    assert alone.drained_used


def test_the_planner_rebuilds_the_services_of_a_cluster_that_drains() -> None:
    states = [state(c, svc(f"10.{i}.0.1")) for i, c in enumerate(("east", "west"), 1)]
    planner = AnswerPlanner(HERE)
    planner.note_health({"east", "west"}, states)
    assert planner.plan(states, {"shop"})[0][1].addresses == ("10.1.0.1",)  # type: ignore[union-attr]
    assert planner.note_drained({"east"}, states)
    assert not planner.note_drained({"east"}, states)
    ((_key, records),) = planner.plan(states, {"shop"})
    assert records is not None
    assert records.addresses == ("10.2.0.1",)
    assert planner.later_tier == {WEB}
    planner.note_drained({"east", "west"}, states)
    planner.plan(states, {"shop"})
    assert planner.drained_used == {WEB}


# --- the explanation ---------------------------------------------------------------------------


def explain(
    found: list[tuple[ClusterState, ExportedService]],
    healthy: set[str],
    drained: frozenset[str] = frozenset(),
    down: dict[str, str] | None = None,
) -> dict:  # type: ignore[type-arg]
    return explain_service(WEB, found, HERE, (healthy, down or {}, drained), 8, 5)


def why(found: dict) -> dict[str, str | None]:  # type: ignore[type-arg]
    return {c["cluster"]: c["why"] for t in found["tiers"] for c in t["clusters"]} | {
        e["cluster"]: e["why"] for e in found["left_out"] if e["why"] == "conflict loser"
    }


def test_every_reason_a_cluster_is_left_out() -> None:
    services = {
        "east": svc("10.1.0.1", weights="east=70,west=30"),
        "west": svc("10.2.0.1"),
        "south": svc("10.3.0.1"),
    }
    found = exporters(**services)
    everyone = {"east", "west", "south"}
    assert why(explain(found, everyone)) == {
        "east": None,
        "west": "later tier",
        "south": "later tier",
    }
    affinity_none = exporters(
        east=svc("10.1.0.1", affinity="none", weights="east=70"), west=svc("10.2.0.1")
    )
    assert why(explain(affinity_none, {"east", "west"})) == {"east": None, "west": "weight 0"}
    assert why(explain(found, {"east"}, down={"west": "dead"}))["west"] == "dead"
    assert why(explain(found, {"east"}))["west"] == "unreachable"
    assert why(explain(found, everyone, frozenset({"east"}))) == {
        "east": "drained", "west": None, "south": "later tier"
    }  # fmt: skip
    not_ready = exporters(east=svc("10.1.0.1", ready=False), west=svc("10.2.0.1"))
    assert why(explain(not_ready, {"east", "west"}))["east"] == "no ready endpoint"
    conflict = exporters(east=svc("10.1.0.1"), west=svc("10.2.0.1", headless=True))
    explained = explain(conflict, {"east", "west"})
    assert why(explained)["west"] == "conflict loser"
    assert [c["cluster"] for t in explained["tiers"] for c in t["clusters"]] == ["east"]


def test_the_explanation_shows_policy_weights_shares_and_state() -> None:
    found = exporters(
        east=svc("10.1.0.1", failover_order="east|west,south", weights="east=70,west=30",
                 max_answers="1", ttl="10"),
        west=svc("10.2.0.1"),
        south=svc("10.3.0.1"),
    )  # fmt: skip
    explained = explain(found, {"east", "west", "south"})
    assert explained["state"] == "first_tier"
    assert explained["policy"] == {
        "affinity": "local", "failover_order": "east|west,south", "failover": {},
        "weights": {"east": 70, "west": 30}, "max_answers": 1, "min_healthy": None, "ttl_s": 10,
    }  # fmt: skip
    first = explained["tiers"][0]["clusters"]
    assert [(c["cluster"], c["weight"], c["share"]) for c in first] == [
        ("east", 70, 0.7), ("west", 30, 0.3)
    ]  # fmt: skip
    assert explained["left_out"] == [{"cluster": "south", "why": "later tier"}]
    drained = explain(found, {"east", "west", "south"}, frozenset({"east", "west", "south"}))
    assert drained["state"] == "failed_open"
    assert drained["drained_used"]
    assert all(
        c["answering"] is (c["cluster"] != "south") for t in drained["tiers"] for c in t["clusters"]
    )


def test_the_explanation_never_raises_on_bad_annotations() -> None:
    found = exporters(east=svc("10.1.0.1", weights="east=x", ttl="-1", colour="blue"))
    explained = explain(found, {"east"})
    assert {p["reason"] for p in explained["problems"]} == {
        "bad_weights", "bad_ttl", "unknown_annotation"
    }  # fmt: skip
    assert explained["policy"]["ttl_s"] == 5


def test_a_drain_changes_the_cluster_record_but_not_every_answer() -> None:
    """A drain or an address is the cluster record's news: it is published and taken, but
    rebuilds only the drained cluster's services (the planner follows drains by cluster)."""
    catalog = Catalog(ClusterState("east", 1, 0))
    change = catalog.announce(DRAINED, "", "")
    assert change
    assert (change.announced, change.cluster) == (True, False)
    log = OriginLog("east", "", 1)
    Publisher(log, None).publish(catalog.local, change, 0.0)
    (record,) = log.records.values()
    assert record.info is not None
    assert record.info.drain == DRAINED
    here = Catalog(ClusterState("west", 1, 0))
    first = ClusterState("east", 1, 1, "us", "", frozenset({"shop"}), {WEB: svc("10.1.0.1")})
    here.put(first, None, True)
    moved = ClusterState(
        "east", 1, 2, "us", "", frozenset({"shop"}), {WEB: svc("10.1.0.1")}, drain=DRAINED
    )
    taken = here.put(moved, frozenset(), True)
    assert taken
    assert (taken.announced, taken.cluster, taken.services) == (True, False, frozenset())
    planner = AnswerPlanner(HERE)
    planner.plan([first], {"shop"})
    planner.note(taken)
    assert not planner.pending  # nothing to rebuild until the drained set flips
    assert planner.note_drained({"east"}, [moved])
    assert planner.pending
