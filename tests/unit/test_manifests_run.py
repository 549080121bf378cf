"""The manifests source's ``run``: scans in a worker process, the event loop only applies
the result. What a reload delivers is what a synchronous scan gives; unchanged services
keep their objects; bad input and a dying worker lose nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from mesh.model import LocalExports, ServiceKey
from mesh.sources.manifests import ManifestSource
from tests.unit.test_manifests import (
    WEB,
    Recorder,
    ScanCounter,
    export,
    make_source,
    service,
    write,
)

DEADLINE_S = 60.0  # a parse of a few MB on a busy two-core machine, with room to spare


def big_manifest(services: int) -> str:
    """``services`` exported services, each with a slice of two endpoints."""
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"]
    for i in range(services):
        meta = f"metadata:\n  name: s{i}\n  namespace: shop\n"
        docs.append(f"apiVersion: v1\nkind: Service\n{meta}spec:\n  ports:\n  - port: 80\n")
        docs.append(f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}")
        docs.append(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: s{i}-a\n  namespace: shop\n  labels:\n"
            f"    kubernetes.io/service-name: s{i}\naddressType: IPv4\nendpoints:\n"
            f'- addresses: ["10.1.{i // 250}.{i % 250}"]\n'
            f'- addresses: ["10.2.{i // 250}.{i % 250}"]\n'
        )
    return "---\n".join(docs)


def replace(path: Path, text: str) -> None:
    """Replace a file at once, as a ConfigMap update does (never half-written)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def until(what: str, condition: Callable[[], bool]) -> None:
    """Poll ``condition`` on the event loop until it holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_reload_is_parsed_off_the_loop_and_gives_what_a_synchronous_scan_gives(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.yaml"
    replace(big, big_manifest(3000))
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    task = asyncio.create_task(source.run())
    try:
        await until("the first exports", lambda: len(recorder.changes) == 1)
        first = recorder.changes[0]
        assert len(first.services) == 3001
        edited = big.read_text().replace('"10.1.4.17"', '"10.9.9.9"')  # service s1017
        replace(big, edited)
        # This coroutine sees the reload in progress: the loop turns while the file is parsed.
        await until("the reload to start", lambda: source.reloading == (str(big),))
        assert len(recorder.changes) == 1  # ... and before its result is delivered
        await until("the edit", lambda: len(recorder.changes) == 2)
        assert source.reloading == ()
    finally:
        await stop(task)
    second = recorder.changes[1]
    assert second == ManifestSource(tmp_path, lambda _: None).load()  # a synchronous scan
    s1017 = ServiceKey("shop", "s1017")
    assert second.services[s1017].endpoints[0].addresses == ("10.9.9.9",)
    unchanged = [k for k in first.services if k != s1017]
    assert all(second.services[k] is first.services[k] for k in unchanged)  # cost nothing


@pytest.mark.asyncio
async def test_bad_yaml_during_a_run_is_reported_once_and_the_last_good_version_kept(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    scans = ScanCounter(source)
    task = asyncio.create_task(source.run())
    try:
        first = await recorder.next_change()
        write(path, "apiVersion: v1\nkind: Service\nmetadata: {name: [x\n")
        problem = await recorder.next_problem()
        assert str(problem) == (
            f"{path}: invalid YAML at line 4, column 1: did not find expected ',' or ']'"
        )
        await scans.wait_for_more(5)
        assert recorder.problems == [problem]  # once
        assert recorder.changes == [first]  # the last good version stays
        assert source.problems == [problem]
        write(path, service("db"), export("db"))
        assert set((await recorder.next_change()).services) == {ServiceKey("shop", "db")}
        assert source.problems == []
    finally:
        await stop(task)


@pytest.mark.asyncio
async def test_a_worker_that_dies_is_replaced_and_unchanged_services_keep_their_objects(
    tmp_path: Path,
) -> None:
    write(tmp_path / "web.yaml", service(), export())
    db = write(tmp_path / "db.yaml", service("db"), export("db"))
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    scans = ScanCounter(source)
    task = asyncio.create_task(source.run())
    try:
        first = await recorder.next_change()
        dead = source.worker_pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)  # the worker this test's source started
        await until("a new worker", lambda: source.worker_pid not in (None, dead))
        await scans.wait_for_more(3)
        assert recorder.changes == [first]  # the new worker's full view changes nothing
        write(db, service("db", clusterIP="None"), export("db"))
        second = await recorder.next_change()
    finally:
        await stop(task)
    assert second.services[WEB] is first.services[WEB]
    assert second.services[ServiceKey("shop", "db")] != first.services[ServiceKey("shop", "db")]


@pytest.mark.asyncio
async def test_stopping_run_stops_its_worker(tmp_path: Path) -> None:
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    task = asyncio.create_task(source.run())
    assert await recorder.next_change() == LocalExports(frozenset({"default"}), {})
    pid = source.worker_pid
    assert pid is not None
    await stop(task)
    assert source.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped


@pytest.mark.asyncio
async def test_the_worker_outlasts_a_sigterm_to_the_group_and_stops_with_its_source(
    tmp_path: Path,
) -> None:
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = make_source(tmp_path, recorder)
    scans = ScanCounter(source)
    task = asyncio.create_task(source.run())
    try:
        await recorder.next_change()
        pid = source.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # what a supervisor's SIGTERM to the group delivers
        await scans.wait_for_more(3)
        assert source.worker_pid == pid  # still the same worker, still scanning
    finally:
        await stop(task)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
