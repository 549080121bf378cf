"""The manifests directory watch (inotify): an edit wakes the source's scan at once, in the
top directory and in subdirectories made after the start; the poll stays the fallback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from mesh.sources.manifests import ManifestSource
from mesh.sources.notify import DirectoryWatch
from tests.unit.test_manifests import Recorder, export, service, write
from tests.unit.test_manifests_run import stop, until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


@pytest.mark.asyncio
async def test_a_written_file_wakes_the_watch(tmp_path: Path) -> None:
    watch = DirectoryWatch(tmp_path)
    assert watch.start()
    try:
        assert watch.watching == 1
        assert not watch.changed.is_set()
        (tmp_path / "svc.yaml").write_text("x: 1\n")
        await until("the wake-up", watch.changed.is_set)
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_a_new_subdirectory_is_watched_after_renew(tmp_path: Path) -> None:
    watch = DirectoryWatch(tmp_path)
    assert watch.start()
    try:
        (tmp_path / "sub").mkdir()
        await until("the wake-up for the new directory", watch.changed.is_set)
        watch.changed.clear()
        watch.renew()
        assert watch.watching == 2
        (tmp_path / "sub" / "db.yaml").write_text("x: 1\n")
        await until("the wake-up from the subdirectory", watch.changed.is_set)
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_a_missing_directory_is_left_to_the_poll(tmp_path: Path) -> None:
    watch = DirectoryWatch(tmp_path / "absent")
    assert watch.start()
    try:
        assert watch.watching == 0  # nothing to watch yet; the source renews on each poll
        (tmp_path / "absent").mkdir()
        watch.renew()
        assert watch.watching == 1
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_an_edit_is_delivered_long_before_the_poll(tmp_path: Path) -> None:
    # A poll of an hour: only the watch can make the source read the edit in this test.
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = ManifestSource(
        tmp_path, recorder.on_change, recorder.on_problem, poll_interval_s=3600.0
    )
    task = asyncio.create_task(source.run())
    try:
        await until("the first exports", lambda: len(recorder.changes) == 1)
        write(tmp_path / "db.yaml", service("db"), export("db"))
        await until("the edit", lambda: len(recorder.changes) == 2)
        assert {k.name for k in recorder.changes[1].services} == {"web", "db"}
    finally:
        await stop(task)
