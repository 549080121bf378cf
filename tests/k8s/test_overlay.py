"""Read-your-writes overlay (pure), with literal times."""

from __future__ import annotations

from typing import Any

from mesh.kube.overlay import Overlay


def obj(rv: str, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "resourceVersion": rv}, **fields}


def test_the_written_object_shows_until_the_store_has_its_version() -> None:
    overlay: Overlay[str] = Overlay(ttl_s=30.0)
    old, mine = obj("5"), obj("6", status={"ok": True})
    overlay.put("web", mine, now=0.0)
    assert overlay.view("web", old, now=1.0) is mine  # the watch has not caught up
    assert overlay.view("web", obj("6"), now=2.0) == obj("6")  # it has: the store is truth
    assert len(overlay) == 0
    assert overlay.view("web", old, now=3.0) is old


def test_a_delete_hides_the_object_until_the_store_drops_it() -> None:
    overlay: Overlay[str] = Overlay(ttl_s=30.0)
    overlay.put("web", None, now=0.0)
    assert overlay.view("web", obj("5"), now=1.0) is None
    assert overlay.pending() == ["web"]
    assert overlay.view("web", None, now=2.0) is None
    assert overlay.pending() == []


def test_entries_expire_when_a_relist_skipped_the_written_version() -> None:
    overlay: Overlay[str] = Overlay(ttl_s=10.0)
    overlay.put("web", obj("6"), now=0.0)
    newer = obj("9")
    assert overlay.view("web", newer, now=9.9) == obj("6")
    assert overlay.view("web", newer, now=10.0) is newer
    assert len(overlay) == 0
