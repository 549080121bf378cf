"""The watch-state reducer with literal list responses and watch events (no IO)."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model import ServiceKey
from mesh.sources.translate import translate
from mesh.sources.watchstate import (
    Change,
    JsonLines,
    KindStore,
    Outcome,
    Resource,
    WatchState,
    backoff_delay,
    failure_text,
    list_page,
    status_text,
)

SERVICES = Resource("Service", "v1", "services")
EXPORTS = Resource("ServiceExport", "multicluster.x-k8s.io/v1alpha1", "serviceexports")
NAMESPACES = Resource("Namespace", "v1", "namespaces")


def svc(name: str, rv: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    """A Service as a list item: no kind or apiVersion, as the API server sends it."""
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", **spec},
    }


def event(kind: str, obj: dict[str, Any], resource: Resource = SERVICES) -> dict[str, Any]:
    return {"type": kind, "object": {"kind": resource.kind, "apiVersion": "v1", **obj}}


def test_a_list_becomes_the_truth_and_stamps_kind_and_api_version() -> None:
    store = KindStore(SERVICES)
    change = store.replace([svc("web", "10"), svc("db", "11")], "12")
    assert change == Change(added=frozenset({("shop", "web"), ("shop", "db")}))
    assert store.listed
    assert store.resource_version == "12"
    assert store.objects[("shop", "web")]["kind"] == "Service"
    assert store.objects[("shop", "web")]["apiVersion"] == "v1"


def test_a_relist_drops_phantoms_and_keeps_what_was_missed() -> None:
    """Between two lists, web was deleted, cart created and db changed: none is lost."""
    store = KindStore(SERVICES)
    store.replace([svc("web", "10"), svc("db", "11")], "12")
    change = store.replace([svc("db", "20", clusterIP="None"), svc("cart", "21")], "22")
    assert change.deleted == {("shop", "web")}
    assert change.added == {("shop", "cart")}
    assert change.modified == {("shop", "db")}
    assert sorted(store.objects) == [("shop", "cart"), ("shop", "db")]
    assert store.resource_version == "22"


def test_a_relist_that_changes_nothing_says_so() -> None:
    store = KindStore(SERVICES)
    store.replace([svc("web", "10")], "12")
    assert not store.replace([svc("web", "10")], "15")
    assert store.resource_version == "15"


def test_watch_events_add_modify_and_delete() -> None:
    store = KindStore(SERVICES)
    store.replace([], "5")
    assert store.apply(event("ADDED", svc("web", "6"))) is Outcome.CHANGED
    assert store.apply(event("MODIFIED", svc("web", "7", clusterIP="None"))) is Outcome.CHANGED
    assert store.objects[("shop", "web")]["spec"]["clusterIP"] == "None"
    assert store.resource_version == "7"
    assert store.apply(event("DELETED", svc("web", "8"))) is Outcome.CHANGED
    assert store.objects == {}
    assert store.resource_version == "8"


def test_an_event_that_repeats_what_is_held_changes_nothing() -> None:
    store = KindStore(SERVICES)
    store.replace([svc("web", "6")], "6")
    assert store.apply(event("MODIFIED", svc("web", "6"))) is Outcome.UNCHANGED
    assert store.apply(event("DELETED", svc("gone", "9"))) is Outcome.UNCHANGED
    assert store.resource_version == "9"


def test_a_bookmark_moves_the_resource_version_only() -> None:
    store = KindStore(SERVICES)
    store.replace([svc("web", "6")], "6")
    bookmark = {
        "type": "BOOKMARK",
        "object": {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "4711", "creationTimestamp": None},
            "spec": {},
            "status": {"loadBalancer": {}},
        },
    }
    assert store.apply(bookmark) is Outcome.UNCHANGED
    assert store.resource_version == "4711"
    assert list(store.objects) == [("shop", "web")]


def test_410_in_the_stream_asks_for_a_relist_and_other_errors_fail() -> None:
    store = KindStore(SERVICES)
    store.replace([], "5")
    gone = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version: 5 (1200)",
            "reason": "Expired",
            "code": 410,
        },
    }
    assert store.apply(gone) is Outcome.EXPIRED
    assert store.last_error == "410 Expired: too old resource version: 5 (1200)"
    internal = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}
    assert store.apply(internal) is Outcome.FAILED
    assert store.last_error == "500: etcd"


@pytest.mark.parametrize(
    "bad",
    [
        "not an event",
        {"type": "ADDED"},
        {"type": "ADDED", "object": {"metadata": {}}},
        {"type": "SURPRISE", "object": {"metadata": {"name": "x"}}},
    ],
)
def test_events_that_make_no_sense_fail_without_touching_the_store(bad: Any) -> None:
    store = KindStore(SERVICES)
    store.replace([svc("web", "6")], "6")
    assert store.apply(bad) is Outcome.FAILED
    assert list(store.objects) == [("shop", "web")]
    assert store.last_error


def test_managed_fields_are_dropped() -> None:
    store = KindStore(SERVICES)
    item = svc("web", "6")
    item["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {}}]
    store.replace([item], "6")
    assert "managedFields" not in store.objects[("shop", "web")]["metadata"]
    assert "managedFields" in item["metadata"]  # the input is not mutated


def test_cluster_scoped_objects_are_keyed_without_namespace() -> None:
    store = KindStore(NAMESPACES)
    store.replace([{"metadata": {"name": "shop", "resourceVersion": "3"}}], "3")
    assert list(store.objects) == [("", "shop")]


def test_watch_state_is_synced_once_every_kind_was_listed_and_feeds_translate() -> None:
    state = WatchState([NAMESPACES, SERVICES, EXPORTS])
    state.stores["Namespace"].replace([{"metadata": {"name": "shop"}}], "1")
    state.stores["Service"].replace([svc("web", "2", ports=[{"port": 80}])], "2")
    assert not state.synced
    state.stores["ServiceExport"].replace([{"metadata": {"name": "web", "namespace": "shop"}}], "3")
    assert state.synced
    exports, problems = translate(state.objects("https://api"))
    assert problems == []
    assert list(exports.services) == [ServiceKey("shop", "web")]
    assert "shop" in exports.namespaces


def test_status_text_reads_any_status() -> None:
    assert status_text({"code": 403, "reason": "Forbidden", "message": "no"}) == "403 Forbidden: no"
    assert status_text({}) == "error"
    assert status_text(None).startswith("not a Status object")


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.25),
        (1, 0.999999, 0.5),
        (2, 0.5, 0.75),
        (3, 0.0, 1.0),
        (10, 0.0, 15.0),
        (10, 1.0, 30.0),
        (1000, 0.5, 22.5),
    ],
)
def test_backoff_doubles_to_a_cap_with_jitter_in_the_upper_half(
    attempt: int, rand: float, expected: float
) -> None:
    assert backoff_delay(attempt, 0.5, 30.0, rand) == pytest.approx(expected, rel=1e-5)


STREAM = (
    b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n'
    b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}\n'
    b'{"type":"DELETED","object":{"metadata":{"name":"a"}}}\n'
)


def split_events(chunks: list[bytes]) -> list[Any]:
    lines = JsonLines()
    events = [e for chunk in chunks for e in lines.feed(chunk)]
    return events + lines.end()


def test_json_lines_whole_split_byte_by_byte_and_without_a_final_newline() -> None:
    whole = split_events([STREAM])
    assert [e["type"] for e in whole] == ["ADDED", "BOOKMARK", "DELETED"]
    assert split_events([STREAM[i : i + 1] for i in range(len(STREAM))]) == whole
    assert split_events([STREAM.rstrip(b"\n")]) == whole
    assert split_events([b"\n\n", STREAM, b"\n"]) == whole


def test_json_lines_with_trailing_junk_fail_naming_the_line() -> None:
    lines = JsonLines()
    assert len(lines.feed(STREAM + b'{"type":"ADD')) == 3
    with pytest.raises(ValueError, match="malformed watch event"):
        lines.end()
    with pytest.raises(ValueError, match="malformed watch event: b'junk'"):
        JsonLines().feed(b"junk\n")


def test_list_pages() -> None:
    page = {"kind": "ServiceList", "metadata": {"resourceVersion": "7", "continue": "t"}}
    assert list_page({**page, "items": [{"a": 1}]}, SERVICES) == ([{"a": 1}], "7", "t")
    assert list_page({**page, "items": None}, SERVICES) == ([], "7", "t")
    for bad in ({"items": []}, {"metadata": {}, "items": []}, "text", None):
        with pytest.raises(ValueError, match="list of services"):
            list_page(bad, SERVICES)


def test_failure_text() -> None:
    body = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "no"}
    assert failure_text("list", EXPORTS, 403, body) == (
        "cannot list serviceexports.multicluster.x-k8s.io: HTTP 403 Forbidden: no "
        "(RBAC does not grant it (see manifests/))"
    )
    assert failure_text("watch", SERVICES, 502, {"message": "<html>"}) == (
        "cannot watch services: HTTP 502: <html>"
    )
