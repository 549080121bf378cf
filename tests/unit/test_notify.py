"""The manifests directory watch (inotify): an edit wakes the source's scan at once, in the
top directory and in subdirectories made after the start; the poll stays the fallback."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from pathlib import Path

import pytest

from mesh.sources import notify
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


@pytest.mark.asyncio
async def test_a_whole_local_tree_is_complete(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    watch = DirectoryWatch(tmp_path)
    assert watch.start()
    try:
        assert watch.watching == 2
        assert watch.complete
    finally:
        watch.close()
    assert not watch.complete  # closed: the poll is in charge again


@pytest.mark.asyncio
async def test_a_tree_past_the_watch_limit_is_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "MAX_WATCHES", 2)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    watch = DirectoryWatch(tmp_path)
    assert watch.start()
    try:
        assert watch.watching == 2
        assert not watch.complete
    finally:
        watch.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "found",
    [0x6969, 0x65735546, None],  # NFS, FUSE: edits made elsewhere; None: statfs failed
)
async def test_a_remote_or_unknown_file_system_is_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: int | None
) -> None:
    monkeypatch.setattr(notify, "fs_type", lambda libc, path: found)
    watch = DirectoryWatch(tmp_path)
    assert watch.start()
    try:
        assert watch.watching == 1
        assert not watch.complete  # the poll stays at its fast pace
    finally:
        watch.close()


def test_fs_type_reads_this_file_system(tmp_path: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    found = notify.fs_type(libc, str(tmp_path))
    assert found is not None
    assert found not in notify.REMOTE_FS_TYPES
    proc = notify.fs_type(libc, "/proc")
    assert proc == 0x9FA0  # PROC_SUPER_MAGIC: the field read is f_type
    assert notify.fs_type(libc, str(tmp_path / "absent")) is None


def fast_poll_long_backstop(directory: Path, recorder: Recorder) -> ManifestSource:
    """A source polling every millisecond, but every hour where its watch is complete."""
    return ManifestSource(
        directory,
        recorder.on_change,
        recorder.on_problem,
        poll_interval_s=0.001,
        watched_poll_s=3600.0,
    )


@pytest.mark.asyncio
async def test_a_complete_watch_leaves_the_poll_a_backstop(tmp_path: Path) -> None:
    # A fast poll and a long backstop: with the whole tree watched the source scans once,
    # then only when the watch wakes it.
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = fast_poll_long_backstop(tmp_path, recorder)
    task = asyncio.create_task(source.run())
    try:
        await until("the first exports", lambda: len(recorder.changes) == 1)
        await asyncio.sleep(0.2)  # a window of 200 fast polls, in which none may come
        assert source.scans == 1
        write(tmp_path / "db.yaml", service("db"), export("db"))
        await until("the edit", lambda: len(recorder.changes) == 2)
        # The creation and the close after writing may wake it apart: two scans at most.
        assert source.scans <= 3
    finally:
        await stop(task)


@pytest.mark.asyncio
async def test_without_a_complete_watch_the_poll_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "fs_type", lambda libc, path: 0x6969)  # NFS: not complete
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = fast_poll_long_backstop(tmp_path, recorder)
    task = asyncio.create_task(source.run())
    try:
        await until("polls past the first scan", lambda: source.scans >= 5)
    finally:
        await stop(task)
