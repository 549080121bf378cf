"""A wake-up when a manifests directory changes: Linux inotify, so an edit is read at once.

Theory of operation
-------------------
The manifests source polls its directory every ``poll_interval_s`` (0.25 s): an edit waited
for half that on average before it was even read. ``DirectoryWatch`` asks the kernel
(inotify(7), through ``ctypes``: no third-party library) to report when a file in the
directory, or in one of its subdirectories, is closed after writing, created, deleted or
moved (a Kubernetes ConfigMap volume swaps a symbolic link, ``..data``, which is a move in
the top directory), and wakes the source's loop then. ``IN_MODIFY`` is left out on
purpose: it fires on the truncation that starts a rewrite in place, and a scan of the
emptied file would withdraw its services until the next one; a writer's close is the
moment the file is whole.

It makes the source scan sooner, and, where it sees everything, poll less: ``complete``
says whether the last ``renew`` watches the whole tree (every directory, fewer than
``MAX_WATCHES``) on a file system whose changes the kernel sees (not a network or FUSE one,
by ``statfs(2)``'s type: an edit made on another host raises no event here). Then the
source polls only as a backstop (``mesh.sources.manifests``), every couple of seconds
instead of four times a second: on an idle agent the poll's round trips to the scan worker
were the largest part of its CPU. Otherwise (a network file system, a tree past
``MAX_WATCHES``, a kernel without inotify) the poll stays as it was. An event queue that
overflows still wakes the source (the kernel queues ``IN_Q_OVERFLOW``, which is read like
any event). Nothing here decides what changed:
the scan does (``mesh.sources.scan``), so a spurious wake-up costs one scan of unchanged
files (a ``stat`` each). Watches on subdirectories are renewed after every wake-up, so a
new subdirectory is watched from the next edit on; a failure to watch is logged once and
leaves the poll in charge.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

log = logging.getLogger("meshd.manifests")

IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENTS = (
    IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
MAX_WATCHES = 256  # directories watched at most; deeper trees rely on the poll past that
# statfs(2) f_type of file systems whose changes may come from another host (inotify sees
# only this kernel's): NFS, SMB/CIFS (three magics), FUSE (sshfs, object-store mounts),
# Ceph, AFS, Coda, 9P, Lustre, GFS2, OCFS2.
REMOTE_FS_TYPES = frozenset(
    {
        0x6969,
        0x517B,
        0xFE534D42,
        0xFF534D42,
        0x65735546,
        0x00C36400,
        0x5346414F,
        0x73757245,
        0x01021997,
        0x0BD00BD0,
        0x01161970,
        0x7461636F,
    }
)


class DirectoryWatch:
    """Sets ``changed`` when something under ``directory`` may have changed (see the
    module doc). ``start`` returns False when inotify is not available: then only the
    poll notices edits."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.changed = asyncio.Event()
        self._fd = -1
        self._libc: ctypes.CDLL | None = None
        self._watched: set[str] = set()
        self._complete = False

    def start(self) -> bool:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        except (OSError, AttributeError):
            return False
        if fd < 0:
            return False
        self._libc, self._fd = libc, fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        self.renew()
        return True

    @property
    def watching(self) -> int:
        """Directories watched now."""
        return len(self._watched)

    @property
    def complete(self) -> bool:
        """The last ``renew`` watches every directory of the tree, on a file system whose
        every change this kernel sees: the poll is then only a backstop."""
        return self._complete and self._fd >= 0

    def renew(self) -> None:
        """Watch the directory and its subdirectories (at most ``MAX_WATCHES``) as they are
        now: a directory removed and made again needs a new watch, and the kernel gives an
        existing one back for a path already watched, so all are asked for again."""
        self._complete = False
        if self._libc is None:
            return
        self._watched.clear()
        directories = self._directories()
        for path in directories:
            wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), EVENTS))
            if wd < 0:
                if not self._watched:
                    err = ctypes.get_errno()
                    log.info("not watching %s (%s): polling only", path, os.strerror(err))
                return
            self._watched.add(path)
        # A file system whose type cannot be read counts as remote: the poll stays.
        types = {fs_type(self._libc, path) for path in directories}
        self._complete = len(directories) < MAX_WATCHES and not types & (REMOTE_FS_TYPES | {None})

    def _directories(self) -> list[str]:
        found: list[str] = []
        top = str(self.directory)
        for dirpath, _dirs, _files in os.walk(top, followlinks=True):
            found.append(dirpath)
            if len(found) >= MAX_WATCHES:
                break
        return found

    def _readable(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass  # drain the queue: which event it was does not matter (the scan tells)
        except BlockingIOError:
            pass
        except OSError:
            self.close()  # the poll carries on alone
        self.changed.set()

    def close(self) -> None:
        self._complete = False
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._libc = None
            self._watched.clear()


def fs_type(libc: ctypes.CDLL, path: str) -> int | None:
    """``statfs(2)``'s ``f_type`` of the file system holding ``path`` (the first field of
    ``struct statfs``, a long on Linux), or None when it cannot be read."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 octets on 64-bit Linux
    try:
        if int(libc.statfs(os.fsencode(path), buf)) != 0:
            return None
    except (AttributeError, OSError):
        return None
    return int(ctypes.c_ulong.from_buffer_copy(buf.raw[: ctypes.sizeof(ctypes.c_ulong)]).value)
