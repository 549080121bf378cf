"""``IncrementalTranslation``: kept file by file, it gives exactly what a full
``translate_exports`` gives, edit after edit, problems and verdicts included, in the same
order; and an edit of one file translates only the services its objects touch.

Seeded random edit sequences (the seed is printed; rerun with ``INCREMENTAL_SEED``) over
small pools of names, so that copies in two files, copies in one file, slices changing
owner, exports without a Service, bad fields and bad identities all happen.
"""

from __future__ import annotations

import os
import random
from typing import Any

from mesh.sources import translate as translate_module
from mesh.sources.incremental import IncrementalTranslation
from mesh.sources.translate import Translation, translate_exports

Files = dict[str, list[Any]]
NAMESPACES = ("ns0", "ns1", None)  # None: no namespace (the default one)
NAMES = ("a", "b", "c")


def meta(rng: random.Random, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name or rng.choice(NAMES)}
    ns = rng.choice(NAMESPACES)
    if ns is not None:
        out["namespace"] = ns
    return out


def body(rng: random.Random) -> Any:
    """One random document: mostly valid objects, sometimes bad ones."""
    roll = rng.randrange(12)
    if roll < 3:
        spec: Any = {"ports": [{"name": "http", "protocol": "TCP", "port": rng.choice([80, 81])}]}
        spec = rng.choice([spec, spec, {"type": "ExternalName"}, "bad", {"ports": "x"}])
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta(rng), "spec": spec}
    if roll < 5:
        m = meta(rng)
        if rng.random() < 0.3:
            m["annotations"] = {"meshd.io/weights": rng.choice(["c1=70", "bad", "c1=x"])}
        version = rng.choice(["v1alpha1", "v1beta1"])
        return {
            "apiVersion": f"multicluster.x-k8s.io/{version}",
            "kind": "ServiceExport",
            "metadata": m,
        }
    if roll < 8:
        m = meta(rng, f"{rng.choice(NAMES)}-{rng.randrange(2)}")
        if rng.random() < 0.9:
            m["labels"] = {"kubernetes.io/service-name": rng.choice(NAMES)}
        address = rng.choice(["10.0.0.1", "10.0.0.2", "10.1.2.3", "bad", "fe80::1"])
        endpoint: dict[str, Any] = {"addresses": [address]}
        if rng.random() < 0.3:
            endpoint["conditions"] = {"ready": rng.choice([True, False, "x"])}
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": m,
            "addressType": rng.choice(["IPv4", "IPv4", "IPv6", "FQDN", "bad"]),
            "endpoints": [endpoint],
            "ports": rng.choice([[{"name": "http", "port": 8080, "protocol": "TCP"}], "x", []]),
        }
    if roll < 9:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": rng.choice(["ns0", "ns1", "ns2", "Bad"])},
        }
    if roll < 10:
        return {"kind": "ConfigMap", "metadata": {"namespace": rng.choice(["extra", "ns2"])}}
    if roll < 11:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": rng.choice([{}, {"name": "a", "namespace": "Bad_NS"}]),
        }
    return rng.choice(["text", 3, None, [1, 2]])


def service(m: dict[str, Any]) -> dict[str, Any]:
    spec = {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": dict(m), "spec": spec}


def export(m: dict[str, Any]) -> dict[str, Any]:
    version = "multicluster.x-k8s.io/v1alpha1"
    return {"apiVersion": version, "kind": "ServiceExport", "metadata": dict(m)}


def slice_(m: dict[str, Any], name: str, rng: random.Random) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": m["name"]}
    address = f"10.0.{rng.randrange(3)}.{rng.randrange(1, 4)}"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {**m, "name": name, "labels": labels},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "hostname": rng.choice(["h1", "h2"])}],
    }


def edit(files: Files, rng: random.Random) -> None:
    """One random change, as the scanner gives it: a changed file is a new list whose
    unchanged documents are the very same objects; other files keep their list."""
    origin = f"f{rng.randrange(5)}.yaml"
    roll = rng.randrange(10)
    if roll == 0:
        files.pop(origin, None)  # the file deleted
        return
    old = files.get(origin, [])
    new = [b for b in old if rng.random() < 0.8]
    for _ in range(rng.randrange(4)):
        new.insert(rng.randrange(len(new) + 1), body(rng))
    if rng.random() < 0.5:  # a whole service: Service, ServiceExport, a slice
        m = meta(rng)
        new += [service(m), export(m), slice_(m, f"{m['name']}-{rng.randrange(2)}", rng)]
    if roll == 1 and new:
        new.append(rng.choice(new))  # the very same body twice in one file
    if roll == 2 and len(files) > 1:
        other = files[rng.choice(sorted(files))]
        if other:
            new.append(rng.choice(other))  # the very same body in two files
    files[origin] = new


def full(files: Files) -> Translation:
    return translate_exports([(o, b) for o, bodies in files.items() for b in bodies])


def assert_same(got: Translation, want: Translation, where: str) -> None:
    assert got.exports.namespaces == want.exports.namespaces, where
    assert list(got.exports.services.items()) == list(want.exports.services.items()), where
    assert got.problems == want.problems, where
    assert list(got.verdicts.items()) == list(want.verdicts.items()), where


def test_incremental_gives_what_a_full_translation_gives() -> None:
    seed = int(os.environ.get("INCREMENTAL_SEED", random.randrange(1 << 30)))
    print(f"INCREMENTAL_SEED={seed}")
    rng = random.Random(seed)
    for sequence in range(40):
        files: Files = {}
        incremental = IncrementalTranslation()
        for step in range(40):
            where = f"INCREMENTAL_SEED={seed}, sequence {sequence}, step {step}"
            assert_same(incremental.update(dict(files)), full(files), where)
            edit(files, rng)


def service_files(count: int) -> Files:
    files: Files = {"all.yaml": []}
    for n in range(count):
        m = {"name": f"s{n}", "namespace": "ns0"}
        files["all.yaml"] += [
            {"apiVersion": "v1", "kind": "Service", "metadata": m, "spec": {}},
            {
                "apiVersion": "multicluster.x-k8s.io/v1alpha1",
                "kind": "ServiceExport",
                "metadata": m,
            },
        ]
    return files


def test_an_edit_of_one_file_translates_only_the_services_it_touches() -> None:
    files = service_files(50)
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "s7-1",
            "namespace": "ns0",
            "labels": {"kubernetes.io/service-name": "s7"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.7"]}],
    }
    files["churn.yaml"] = [slice_]
    incremental = IncrementalTranslation()
    before = incremental.update(files)
    assert incremental.update(files) is before  # nothing changed: the very same result
    calls: list[object] = []
    real = translate_module._export_one

    def counting(inputs: list[Any]) -> Any:
        calls.append(inputs[0].name)
        return real(inputs)

    moved = {**slice_, "endpoints": [{"addresses": ["10.9.9.9"]}]}
    files = {**files, "churn.yaml": [moved]}
    import mesh.sources.incremental as incremental_module

    incremental_module._export_one = counting  # type: ignore[assignment]
    try:
        after = incremental.update(files)
    finally:
        incremental_module._export_one = real  # type: ignore[assignment]
    assert calls == ["s7"]
    assert_same(after, full(files), "one slice moved")
    changed = [
        k
        for k in after.exports.services
        if after.exports.services[k] is not before.exports.services[k]
    ]
    assert [str(k) for k in changed] == ["ns0/s7"]
    assert before.exports.services["ns0/s7" and changed[0]].endpoints[0].addresses == (
        "10.0.0.7",
    )  # the result given before is not changed by the next
