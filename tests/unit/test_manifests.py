"""The manifests source: parsing, MCS translation rules, and the polling directory adapter."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.model import Endpoint, LocalExports, ServiceKey, ServicePort, ServiceType
from mesh.sources import scan
from mesh.sources.manifests import (
    ManifestDirectoryError,
    ManifestSource,
    SourceProblem,
    parse_documents,
    translate,
)

MCS = "multicluster.x-k8s.io/v1alpha1"
WEB = ServiceKey("shop", "web")

# ------------------------------------------------------------------------ object builders


def service(name: str = "web", ns: str | None = "shop", **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"name": "http", "port": 80}])
    metadata: dict[str, Any] = {"name": name}
    if ns is not None:
        metadata["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def export(name: str = "web", ns: str | None = "shop") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if ns is not None:
        metadata["namespace"] = ns
    return {"apiVersion": MCS, "kind": "ServiceExport", "metadata": metadata}


def endpoint_slice(
    name: str = "web-1",
    endpoints: list[Any] | None = None,
    service_name: str | None = "web",
    ns: str = "shop",
    address_type: str = "IPv4",
) -> dict[str, Any]:
    labels = {} if service_name is None else {"kubernetes.io/service-name": service_name}
    if endpoints is None:
        endpoints = [{"addresses": ["10.0.0.1"]}]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "addressType": address_type,
        "endpoints": endpoints,
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def run_translate(
    *objects: dict[str, Any], origin: str = "m.yaml"
) -> tuple[LocalExports, list[str]]:
    exports, problems = translate([(origin, obj) for obj in objects])
    return exports, [p.reason for p in problems]


# ------------------------------------------------------------------------ parse_documents


def test_parse_documents_skips_empty_documents_and_expands_lists() -> None:
    text = """
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
- apiVersion: multicluster.x-k8s.io/v1alpha1
  kind: ServiceExport
  metadata: {name: web, namespace: shop}
---
# only a comment
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""
    objects, problems = parse_documents(text, "a.yaml")
    assert problems == []
    assert [o["kind"] for o in objects] == ["Service", "ServiceExport", "Namespace"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("- a\n- b\n", "expected a Kubernetes object (a mapping), got a list"),
        ("just text\n", "expected a Kubernetes object (a mapping), got a string"),
        ("kind: Service\nmetadata: {name: web}\n", "missing apiVersion"),
        ("apiVersion: v1\nmetadata: {name: web}\n", "missing kind"),
        ("apiVersion: v1\nkind: Service\n", "Service: missing metadata.name"),
        ("apiVersion: v1\nkind: List\nitems: 3\n", "items must be a list, got a number"),
        (
            "apiVersion: v1\nkind: List\nitems: [1]\n",
            "items[0]: expected a Kubernetes object (a mapping), got a number",
        ),
    ],
)
def test_parse_documents_reports_bad_documents_and_keeps_the_others(
    document: str, reason: str
) -> None:
    good = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    objects, problems = parse_documents(f"{good}---\n{document}---\n{good}", "f.yaml")
    assert len(objects) == 2
    assert problems == [SourceProblem("f.yaml", f"document 2 (line 5): {reason}")]


def test_parse_documents_syntax_error_is_one_problem_with_the_line() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nmetadata: [x\n"
    objects, problems = parse_documents(text, "dir/bad.yaml")
    assert objects == []
    assert len(problems) == 1
    assert str(problems[0]).startswith("dir/bad.yaml: invalid YAML at line 6")


def test_parse_documents_reads_json_files_as_json() -> None:
    objects, problems = parse_documents(
        '{"apiVersion": "v1", "kind": "Namespace",\n\t"metadata": {"name": "shop"}}', "ns.json"
    )
    assert problems == []
    assert objects[0]["metadata"]["name"] == "shop"
    objects, problems = parse_documents('{"a": 1,\n}', "bad.json")
    assert objects == []
    assert [str(p) for p in problems] == [
        "bad.json: invalid JSON at line 2, column 1: "
        "Expecting property name enclosed in double quotes"
    ]


def test_source_problem_str() -> None:
    assert str(SourceProblem("a/b.yaml", "broken")) == "a/b.yaml: broken"


# ------------------------------------------------------------------------ translation


@pytest.mark.parametrize(
    ("objects", "exported"),
    [
        ([service(), export()], {WEB}),
        ([service(), {**export(), "apiVersion": "multicluster.x-k8s.io/v1beta1"}], {WEB}),
        ([service()], set()),
        ([service(), export(ns="other"), service(ns="other")], {ServiceKey("other", "web")}),
        ([service(ns=None), export(ns=None)], {ServiceKey("default", "web")}),
        ([service(ns=""), export(ns="default")], {ServiceKey("default", "web")}),
        ([service("a"), service("b"), export("b")], {ServiceKey("shop", "b")}),
        (
            [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}],
            set(),
        ),
    ],
)
def test_a_service_is_exported_when_a_service_export_exists(
    objects: list[dict[str, Any]], exported: set[ServiceKey]
) -> None:
    exports, problems = run_translate(*objects)
    assert set(exports.services) == exported
    assert problems == []


def test_service_export_without_service_is_reported_but_not_fatal() -> None:
    exports, problems = run_translate(export(), service("db"), export("db"))
    assert problems == ["ServiceExport shop/web has no Service"]
    assert set(exports.services) == {ServiceKey("shop", "db")}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"clusterIP": "None"}, ServiceType.HEADLESS),
        ({"clusterIPs": ["None"]}, ServiceType.HEADLESS),
        ({}, ServiceType.CLUSTER_SET_IP),
        ({"clusterIP": "10.96.0.10"}, ServiceType.CLUSTER_SET_IP),
        ({"type": "LoadBalancer"}, ServiceType.CLUSTER_SET_IP),
    ],
)
def test_service_type(spec: dict[str, Any], expected: ServiceType) -> None:
    exports, _ = run_translate(service(**spec), export())
    assert exports.services[WEB].type is expected


def test_ports_keep_their_order_and_defaults() -> None:
    ports = [
        {"name": "http", "port": 80},
        {"port": 53, "protocol": "UDP"},
        {"name": "sctp", "port": 9, "protocol": "SCTP"},
    ]
    exports, problems = run_translate(service(ports=ports), export())
    assert problems == []
    assert exports.services[WEB].ports == (
        ServicePort("http", "TCP", 80),
        ServicePort("", "UDP", 53),
        ServicePort("sctp", "SCTP", 9),
    )


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        ({"port": "http"}, "spec.ports[1].port must be an integer 1-65535, got 'http'"),
        ({"port": "80"}, "spec.ports[1].port must be an integer 1-65535, got '80'"),
        ({"port": 0}, "spec.ports[1].port must be an integer 1-65535, got 0"),
        ({"port": 65536}, "spec.ports[1].port must be an integer 1-65535, got 65536"),
        ({"port": True}, "spec.ports[1].port must be an integer 1-65535, got True"),
        ({"name": "x"}, "spec.ports[1].port must be an integer 1-65535, got None"),
        (
            {"port": 81, "protocol": "tcp"},
            "spec.ports[1].protocol must be TCP, UDP or SCTP, got 'tcp'",
        ),
        ({"port": 81, "name": "Web_UI"}, "spec.ports[1].name must be an RFC 1123 label"),
        ("81", "spec.ports[1] must be a mapping, got a string"),
    ],
)
def test_a_bad_port_skips_the_service(port: Any, reason: str) -> None:
    objects = [service(ports=[{"port": 80}, port]), export(), service("db"), export("db")]
    exports, problems = run_translate(*objects)
    assert set(exports.services) == {ServiceKey("shop", "db")}
    assert len(problems) == 1
    assert problems[0].startswith(f"Service shop/web: {reason}")


def test_external_name_services_are_not_exportable() -> None:
    external = service(type="ExternalName", externalName="db.example.com")
    exports, problems = run_translate(external, export())
    assert exports.services == {}
    assert problems == [
        "Service shop/web: spec.type ExternalName cannot be exported (it has no endpoints)"
    ]
    # Not exported: nothing to say about it.
    assert run_translate(external)[1] == []


@pytest.mark.parametrize(
    ("conditions", "publish", "ready"),
    [
        (None, None, True),  # no conditions at all
        ({}, None, True),  # ready absent
        ({"ready": None}, None, True),
        ({"ready": True}, None, True),
        ({"ready": False}, None, False),
        ({"ready": False}, False, False),
        ({"ready": False}, True, True),  # publishNotReadyAddresses
        ({"ready": None}, True, True),
    ],
)
def test_endpoint_readiness(conditions: Any, publish: bool | None, ready: bool) -> None:
    item: dict[str, Any] = {"addresses": ["10.0.0.1"]}
    if conditions is not None:
        item["conditions"] = conditions
    spec: dict[str, Any] = {}
    if publish is not None:
        spec["publishNotReadyAddresses"] = publish
    exports, problems = run_translate(service(**spec), export(), endpoint_slice(endpoints=[item]))
    assert problems == []
    assert exports.services[WEB].endpoints == (Endpoint(("10.0.0.1",), ready=ready),)


def test_endpoint_fields() -> None:
    item = {"addresses": ["10.0.0.1", "10.0.0.2"], "hostname": "web-0", "zone": "eu-1a"}
    exports, _ = run_translate(
        service(clusterIP="None"), export(), endpoint_slice(endpoints=[item])
    )
    assert exports.services[WEB].endpoints == (
        Endpoint(("10.0.0.1", "10.0.0.2"), ready=True, hostname="web-0", zone="eu-1a"),
    )


def test_ipv6_slices_and_wrong_family_addresses() -> None:
    v6 = endpoint_slice(
        "web-v6",
        [{"addresses": ["2001:DB8::0:1"]}, {"addresses": ["10.0.0.9"]}],
        address_type="IPv6",
    )
    v4 = endpoint_slice("web-v4", [{"addresses": ["fd00::1"]}, {"addresses": ["10.0.0.1"]}])
    exports, problems = run_translate(service(), export(), v6, v4)
    assert exports.services[WEB].endpoints == (
        Endpoint(("10.0.0.1",)),
        Endpoint(("2001:db8::1",)),  # canonical text form
    )
    assert problems == [
        "EndpointSlice shop/web-v4: endpoints[0].addresses[0] 'fd00::1' is not an IPv4 "
        "address (addressType IPv4)",
        "EndpointSlice shop/web-v6: endpoints[1].addresses[0] '10.0.0.9' is not an IPv6 "
        "address (addressType IPv6)",
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({}, "endpoints[0].addresses must be a non-empty list of IP addresses, got None"),
        ({"addresses": []}, "endpoints[0].addresses must be a non-empty list"),
        ({"addresses": ["web"]}, "endpoints[0].addresses[0] is not an IP address: 'web'"),
        ({"addresses": [167772161]}, "endpoints[0].addresses[0] is not an IP address"),
        (
            {"addresses": ["10.0.0.2"], "conditions": {"ready": "yes"}},
            "endpoints[0].conditions.ready must be true, false or null, got 'yes'",
        ),
        (
            {"addresses": ["10.0.0.2"], "hostname": "Web.0"},
            "endpoints[0].hostname must be an RFC 1123 label",
        ),
        ("10.0.0.2", "endpoints[0] must be a mapping, got a string"),
    ],
)
def test_a_bad_endpoint_is_skipped(item: Any, reason: str) -> None:
    good = {"addresses": ["10.0.0.1"]}
    exports, problems = run_translate(service(), export(), endpoint_slice(endpoints=[item, good]))
    assert exports.services[WEB].endpoints == (Endpoint(("10.0.0.1",)),)
    assert len(problems) == 1
    assert problems[0].startswith(f"EndpointSlice shop/web-1: {reason}")


def test_slices_attach_by_label_and_fqdn_slices_are_ignored() -> None:
    exports, problems = run_translate(
        service(),
        export(),
        service("db"),  # not exported: its slice is not looked at
        endpoint_slice("db-1", [{"addresses": ["bogus"]}], service_name="db"),
        endpoint_slice("other-ns", service_name="web", ns="other"),
        endpoint_slice("web-fqdn", [{"addresses": ["a.example"]}], address_type="FQDN"),
        endpoint_slice("orphan", service_name=None),
    )
    assert exports.services[WEB].endpoints == ()
    assert problems == [
        "EndpointSlice shop/orphan: missing label kubernetes.io/service-name "
        "(the name of its Service)"
    ]


def test_several_slices_are_concatenated_by_slice_name() -> None:
    slices = [
        endpoint_slice("web-b", [{"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]),
        endpoint_slice("web-a", [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.1"]}]),
    ]
    exports, _ = run_translate(service(), export(), *slices)
    addresses = [e.addresses[0] for e in exports.services[WEB].endpoints]
    assert addresses == ["10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.4"]


def test_namespaces_are_namespace_objects_and_namespaces_of_objects_and_default() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "apps"},
    }
    exports, _ = run_translate(namespace("empty"), service(), deployment)
    assert exports.namespaces == {"default", "empty", "shop", "apps"}
    assert run_translate()[0] == LocalExports(frozenset({"default"}), {})


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (service("Web"), "Service shop/Web: metadata.name must be an RFC 1123 label"),
        (service(ns="Shop"), "Service Shop/web: metadata.namespace must be an RFC 1123 label"),
        (service("a.b"), "Service shop/a.b: metadata.name must be an RFC 1123 label"),
        (namespace("-x"), "Namespace -x: metadata.name must be an RFC 1123 label"),
        (
            endpoint_slice("Web_1"),
            "EndpointSlice shop/Web_1: metadata.name must be an RFC 1123 subdomain",
        ),
        (
            {**service(), "apiVersion": "v2"},
            "Service shop/web: apiVersion must be v1, got 'v2'",
        ),
        (
            {**export(), "apiVersion": "multicluster.x-k8s.io/v2"},
            "ServiceExport shop/web: apiVersion must be multicluster.x-k8s.io/v1beta1 or "
            "multicluster.x-k8s.io/v1alpha1, got 'multicluster.x-k8s.io/v2'",
        ),
        (
            {**endpoint_slice(), "apiVersion": "discovery.k8s.io/v1beta1"},
            "EndpointSlice shop/web-1: apiVersion must be discovery.k8s.io/v1",
        ),
    ],
)
def test_invalid_identities_are_problems_and_skipped(obj: dict[str, Any], reason: str) -> None:
    _, problems = run_translate(obj)
    assert len(problems) == 1
    assert problems[0].startswith(reason)


def test_same_kind_in_another_api_group_is_ignored_silently() -> None:
    knative = {**service(), "apiVersion": "serving.knative.dev/v1"}
    exports, problems = run_translate(knative, export())
    assert WEB not in exports.services
    assert len(problems) == 1
    assert "no Service" in problems[0]
    assert "apiVersion" not in problems[0]


def test_endpoint_slice_names_may_be_subdomains() -> None:
    exports, problems = run_translate(service(), export(), endpoint_slice("web.v1"))
    assert problems == []
    assert len(exports.services[WEB].endpoints) == 1


def test_duplicate_objects_keep_the_copy_from_the_first_file() -> None:
    first = service(ports=[{"name": "a", "port": 1}])
    second = service(ports=[{"name": "b", "port": 2}])
    objects = [("z.yaml", second), ("a.yaml", first), ("m.yaml", export())]
    exports, problems = translate(objects)
    assert exports.services[WEB].ports == (ServicePort("a", "TCP", 1),)
    assert problems == [
        SourceProblem("z.yaml", "Service shop/web: also defined in a.yaml; this copy is ignored")
    ]


def test_translation_is_deterministic_under_shuffled_input() -> None:
    objects: list[tuple[str, dict[str, Any]]] = [
        ("a.yaml", namespace("shop")),
        ("a.yaml", service(clusterIP="None")),
        ("b.yaml", export()),
        ("c.yaml", endpoint_slice("web-c", [{"addresses": ["10.0.0.3"]}])),
        ("c.yaml", endpoint_slice("web-a", [{"addresses": ["10.0.0.1"], "hostname": "a"}])),
        ("d.yaml", endpoint_slice("web-b", [{"addresses": ["10.0.0.2"]}, {"addresses": ["x"]}])),
        ("d.yaml", service("db")),
        ("d.yaml", export("db")),
        ("e.yaml", export("gone")),
        ("f.yaml", service(ns="other")),
        ("g.yaml", service(clusterIP="None", ports=[])),  # duplicate of a.yaml's
        ("g.yaml", endpoint_slice("stray", service_name=None)),
    ]
    expected = translate(objects)
    shuffler = random.Random(1645)
    for _ in range(50):
        shuffled = list(objects)
        shuffler.shuffle(shuffled)
        assert translate(shuffled) == expected
    exports, problems = expected
    assert list(exports.services) == [ServiceKey("shop", "db"), WEB]
    assert [e.addresses[0] for e in exports.services[WEB].endpoints] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert len(problems) == 4


def test_translate_tolerates_garbage() -> None:
    garbage: list[Any] = [
        export(),  # fine: makes the Service below count
        None,
        [],
        {"kind": "Service"},
        {"kind": "Service", "apiVersion": "v1", "metadata": "x"},
        {**service(), "spec": "x"},
        {**endpoint_slice(), "endpoints": "x", "metadata": {"name": "s", "labels": "x"}},
    ]
    _, problems = translate([("g.yaml", item) for item in garbage])
    assert len(problems) == len(garbage) - 1


# ------------------------------------------------------------------------ the directory adapter

_clock = iter(range(1_000_000_000, 10**18, 1_000_000_000))


def write(path: Path, *objects: dict[str, Any] | str) -> Path:
    """Write objects (or raw text) and give the file a new mtime, so a change is always seen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [o if isinstance(o, str) else yaml.safe_dump(o) for o in objects]
    path.write_text("---\n".join(parts))
    stamp = next(_clock)
    os.utime(path, ns=(stamp, stamp))
    return path


class Recorder:
    """Collects deliveries and problems, and lets a test wait for the next of either."""

    def __init__(self) -> None:
        self.changes: list[LocalExports] = []
        self.problems: list[SourceProblem] = []
        self.changed = asyncio.Event()
        self.problem = asyncio.Event()

    def on_change(self, exports: LocalExports) -> None:
        self.changes.append(exports)
        self.changed.set()

    def on_problem(self, problem: SourceProblem) -> None:
        self.problems.append(problem)
        self.problem.set()

    async def next_change(self) -> LocalExports:
        await asyncio.wait_for(self.changed.wait(), timeout=5)
        self.changed.clear()
        return self.changes[-1]

    async def next_problem(self) -> SourceProblem:
        await asyncio.wait_for(self.problem.wait(), timeout=5)
        self.problem.clear()
        return self.problems[-1]


def make_source(directory: Path, recorder: Recorder | None = None) -> ManifestSource:
    recorder = recorder or Recorder()
    return ManifestSource(
        directory,
        recorder.on_change,
        recorder.on_problem,
        poll_interval_s=0.001,
        watched_poll_s=0.001,  # these tests drive the poll itself
    )


def test_load_reads_yaml_yml_and_json_recursively(tmp_path: Path) -> None:
    write(tmp_path / "svc.yaml", service(), export())
    write(tmp_path / "sub" / "deep" / "db.yml", service("db"), export("db"))
    (tmp_path / "ns.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "json"}}'
    )
    write(tmp_path / "notes.txt", service("txt"), export("txt"))
    write(tmp_path / ".hidden.yaml", service("hidden"), export("hidden"))
    write(tmp_path / ".git" / "x.yaml", service("git"), export("git"))
    write(tmp_path / ".svc.yaml.swp", service("swp"), export("swp"))
    recorder = Recorder()
    exports = make_source(tmp_path, recorder).load()
    assert set(exports.services) == {WEB, ServiceKey("shop", "db")}
    assert "json" in exports.namespaces
    assert recorder.problems == []


def test_load_follows_config_map_links_but_skips_dot_directories(tmp_path: Path) -> None:
    data = write(tmp_path / "..2024_05_01_10_00_00.1" / "web.yaml", service(), export())
    (tmp_path / "..data").symlink_to(data.parent.name)
    (tmp_path / "web.yaml").symlink_to(Path("..data") / "web.yaml")
    recorder = Recorder()
    exports = make_source(tmp_path, recorder).load()
    assert set(exports.services) == {WEB}
    assert recorder.problems == []  # read once, not three times


def test_load_survives_a_symlink_loop(tmp_path: Path) -> None:
    write(tmp_path / "a" / "web.yaml", service(), export())
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    exports = make_source(tmp_path).load()
    assert set(exports.services) == {WEB}


def test_bad_yaml_in_one_file_keeps_the_others_and_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", service(), export())
    bad = write(tmp_path / "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: [x\n")
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    for _ in range(3):
        assert set(source.load().services) == {WEB}
    assert [str(p) for p in recorder.problems] == [
        f"{bad}: invalid YAML at line 4, column 1: did not find expected ',' or ']'"
    ]
    assert source.problems == recorder.problems


def test_problems_are_reported_again_when_their_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", service(ports=[{"port": "x"}]), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    source.load()
    source.load()
    assert len(recorder.problems) == 1
    write(path, service(ports=[{"port": "x"}]), export())
    source.load()
    assert len(recorder.problems) == 2
    write(path, service(), export())
    source.load()
    assert len(recorder.problems) == 2
    assert source.problems == []


def test_edits_are_picked_up_and_unchanged_files_are_not_reparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_load = scan.load_stream_cached

    def counting_load(text: str, origin: str, cache: dict[str, Any]) -> Any:
        parsed.append(Path(origin).name)
        return real_load(text, origin, cache)

    monkeypatch.setattr(scan, "load_stream_cached", counting_load)
    web = write(tmp_path / "web.yaml", service(), export())
    write(tmp_path / "db.yaml", service("db"))
    source = make_source(tmp_path)
    assert set(source.load().services) == {WEB}
    assert sorted(parsed) == ["db.yaml", "web.yaml"]

    write(tmp_path / "db.yaml", service("db"), export("db"))
    assert set(source.load().services) == {WEB, ServiceKey("shop", "db")}
    assert sorted(parsed) == ["db.yaml", "db.yaml", "web.yaml"]

    web.unlink()
    assert set(source.load().services) == {ServiceKey("shop", "db")}
    assert source.load() == source.load()
    assert len(parsed) == 3


def test_a_broken_edit_keeps_the_files_last_good_objects(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    assert set(source.load().services) == {WEB}
    write(path, "apiVersion: v1\nkind: Service\nmetadata: {name: [x\n")
    assert set(source.load().services) == {WEB}
    assert len(recorder.problems) == 1
    path.write_bytes(b"\xff\xfe not utf-8")
    assert set(source.load().services) == {WEB}
    assert [p.reason for p in recorder.problems][-1].startswith("not UTF-8 text")
    write(path, service("db"), export("db"))
    assert set(source.load().services) == {ServiceKey("shop", "db")}


def test_unreadable_files_are_problems_not_exceptions(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", service(), export())
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\x80\x81")
    os.mkfifo(tmp_path / "fifo.yaml")
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    assert set(source.load().services) == {WEB}
    source.load()
    assert sorted(str(p) for p in recorder.problems) == [
        f"{tmp_path / 'binary.yaml'}: not UTF-8 text (invalid byte at offset 0)",
        f"{tmp_path / 'dangling.yaml'}: cannot read: No such file or directory",
        f"{tmp_path / 'fifo.yaml'}: not a regular file",
    ]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_load_raises_when_the_directory_is_not_there(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "manifests"
    if kind == "file":
        target.write_text("")
    with pytest.raises(ManifestDirectoryError, match="does not exist or is not a directory"):
        make_source(target).load()


def test_the_default_problem_reporter_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "a.yaml", export())
    source = ManifestSource(tmp_path, lambda exports: None)
    with caplog.at_level("WARNING", logger="meshd.manifests"):
        source.load()
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'a.yaml'}: ServiceExport shop/web has no Service"
    ]


# ------------------------------------------------------------------------ run()


class ScanCounter:
    """Lets a test wait for a number of further scans of ``source`` (``source.scans``)."""

    def __init__(self, source: ManifestSource) -> None:
        self.source = source

    async def wait_for_more(self, scans: int) -> None:
        target = self.source.scans + scans
        deadline = asyncio.get_running_loop().time() + 10
        while self.source.scans < target:
            assert asyncio.get_running_loop().time() < deadline, f"{scans} more scans"
            await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_run_delivers_first_scan_and_then_changes_only(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    scans = ScanCounter(source)
    task = asyncio.create_task(source.run())
    try:
        first = await recorder.next_change()
        assert set(first.services) == {WEB}
        await scans.wait_for_more(5)
        assert len(recorder.changes) == 1  # nothing changed: nothing delivered

        write(path, service(clusterIP="None"), export())
        second = await recorder.next_change()
        assert second.services[WEB].type is ServiceType.HEADLESS
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_run_delivers_empty_exports_for_an_empty_directory(tmp_path: Path) -> None:
    recorder = Recorder()
    task = asyncio.create_task(make_source(tmp_path, recorder).run())
    try:
        assert await recorder.next_change() == LocalExports(frozenset({"default"}), {})
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_run_keeps_the_last_exports_when_the_directory_vanishes(tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    write(directory / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(directory, recorder)
    scans = ScanCounter(source)
    task = asyncio.create_task(source.run())
    try:
        first = await recorder.next_change()
        hidden = directory.rename(tmp_path / "elsewhere")
        problem = await recorder.next_problem()
        assert problem.origin == str(directory)
        assert "does not exist" in problem.reason
        await scans.wait_for_more(5)
        assert recorder.problems == [problem]  # reported once
        assert recorder.changes == [first]  # nothing withdrawn
        assert source.problems == [problem]

        hidden.rename(directory)
        await scans.wait_for_more(2)
        assert recorder.changes == [first]  # same content: nothing to deliver
        assert source.problems == []

        write(directory / "db.yaml", service("db"), export("db"))
        assert set((await recorder.next_change()).services) == {WEB, ServiceKey("shop", "db")}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("", 0)),
        ({"sessionAffinity": "None"}, ("", 0)),
        ({"sessionAffinity": "ClientIP"}, ("ClientIP", 10800)),
        (
            {
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            },
            ("ClientIP", 60),
        ),
    ],
)
def test_session_affinity_is_read_from_the_service(
    spec: dict[str, Any], expected: tuple[str, int]
) -> None:
    exports, problems = run_translate(service(**spec), export())
    assert problems == []
    exported = exports.services[WEB]
    assert (exported.session_affinity, exported.affinity_timeout_s) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"sessionAffinity": "Cookie"}, "spec.sessionAffinity must be ClientIP or None"),
        (
            {
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
            },
            "timeoutSeconds must be an integer 1-86400",
        ),
    ],
)
def test_a_bad_session_affinity_makes_the_service_invalid(
    spec: dict[str, Any], reason: str
) -> None:
    exports, problems = run_translate(service(**spec), export())
    assert WEB not in exports.services
    assert any(reason in p for p in problems), problems
