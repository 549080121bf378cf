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

It only ever makes the source scan *sooner*: the poll stays as it was, for what inotify
cannot see (a network file system, a directory tree past ``MAX_WATCHES`` directories, a
kernel without inotify, an event queue that overflowed). Nothing here decides what changed:
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

    def renew(self) -> None:
        """Watch the directory and its subdirectories (at most ``MAX_WATCHES``) as they are
        now: a directory removed and made again needs a new watch, and the kernel gives an
        existing one back for a path already watched, so all are asked for again."""
        if self._libc is None:
            return
        self._watched.clear()
        for path in self._directories():
            wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), EVENTS))
            if wd < 0:
                if not self._watched:
                    err = ctypes.get_errno()
                    log.info("not watching %s (%s): polling only", path, os.strerror(err))
                return
            self._watched.add(path)

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
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._libc = None
            self._watched.clear()
