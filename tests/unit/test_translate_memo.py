"""``TranslationMemo``: translating with a memo gives exactly what translating afresh gives,
edit after edit, while unchanged services are not translated again.

Seeded random edits (the seed is printed; rerun with ``MEMO_SEED``) over a small set of
objects: endpoints moved, slices dropped, bad Services, duplicates, exports withdrawn.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from mesh.sources.translate import TranslationMemo, translate_exports

Objects = list[tuple[str, dict[str, Any]]]


def service(ns: str, name: str, port: Any = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": port}]},
    }


def export(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": {"name": name, "namespace": ns},
    }


def endpoints(ns: str, name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-1",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address]}],
    }


def initial(count: int) -> Objects:
    objects: Objects = []
    for n in range(count):
        file = f"f{n % 3}.yaml"
        ns = f"ns{n % 2}"
        objects += [
            (file, service(ns, f"s{n}")),
            (file, export(ns, f"s{n}")),
            (file, endpoints(ns, f"s{n}", f"10.0.0.{n + 1}")),
        ]
    return objects


def edit(objects: Objects, rng: random.Random) -> None:
    """One random edit, as a changed file would give it: new bodies, old ones untouched."""
    i = rng.randrange(len(objects))
    origin, body = objects[i]
    meta = body["metadata"]
    choice = rng.randrange(6)
    if choice == 0 and body["kind"] == "EndpointSlice":
        address = f"10.1.{rng.randrange(250)}.{rng.randrange(1, 250)}"
        objects[i] = (
            origin,
            endpoints(meta["namespace"], meta["labels"][next(iter(meta["labels"]))], address),
        )
    elif choice == 1:
        del objects[i]  # a slice, a Service or an export gone
    elif choice == 2:
        objects.append((origin, service(meta.get("namespace", "ns0"), f"s{i}", port="bad")))
    elif choice == 3:
        objects.append((f"z{rng.randrange(2)}.yaml", body))  # the same object in two places
    elif choice == 4:
        objects.append(("g.yaml", {"kind": "ConfigMap", "metadata": {"namespace": "extra"}}))
    else:
        objects.append(("h.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {}}))


def test_memo_gives_what_a_fresh_translation_gives() -> None:
    seed = int(os.environ.get("MEMO_SEED", random.randrange(1 << 30)))
    print(f"MEMO_SEED={seed}")
    rng = random.Random(seed)
    for _ in range(20):
        objects = initial(12)
        memo = TranslationMemo()
        for step in range(25):
            fresh = translate_exports(list(objects))
            memoized = translate_exports(list(objects), memo)
            assert memoized == fresh, f"seed {seed}, step {step}"
            edit(objects, rng)


def test_unchanged_services_are_not_translated_again() -> None:
    objects = initial(6)
    memo = TranslationMemo()
    before = translate_exports(objects, memo).exports.services
    objects[2] = ("f0.yaml", endpoints("ns0", "s0", "10.9.9.9"))  # s0's slice, a new body
    after = translate_exports(objects, memo).exports.services
    moved = {k for k in after if after[k] is not before[k]}
    assert [str(k) for k in moved] == ["ns0/s0"]
    assert after[next(iter(moved))].endpoints[0].addresses == ("10.9.9.9",)
    assert len(memo.services) == len(after)  # only what this call used is kept


@pytest.mark.parametrize("problem_first", [True, False])
def test_a_problem_is_reported_on_every_translation(problem_first: bool) -> None:
    bad = ("bad.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {}})
    objects = [bad, *initial(2)] if problem_first else [*initial(2), bad]
    memo = TranslationMemo()
    first = translate_exports(objects, memo).problems
    again = translate_exports(objects, memo).problems
    assert first == again
    assert any("metadata.name" in p.reason for p in again)


def test_the_very_body_twice_in_one_origin_is_a_duplicate_with_a_memo_too() -> None:
    # Found by MEMO_SEED=759656966: the memo handed back one object for both copies, so the
    # second was not reported as a duplicate.
    twice = export("ns0", "lone")
    objects = [
        *initial(2),
        ("z.yaml", service("ns0", "lone")),
        ("z.yaml", twice),
        ("z.yaml", twice),
    ]
    memo = TranslationMemo()
    for _ in range(2):  # the first call fills the memo, the second reads it
        fresh = translate_exports(list(objects))
        memoized = translate_exports(list(objects), memo)
        assert memoized == fresh
        assert [p.reason for p in memoized.problems] == [
            "ServiceExport ns0/lone: also defined in z.yaml; this copy is ignored"
        ]
