"""Kernel files kept open and read again with pread(2) at offset 0, for the files read every sample per container.

cgroupfs, sysfs and /proc/PID files are seq_files: a read at offset 0 generates the text afresh (seq_read_iter
restarts at position 0), so one pread replaces open + read + close and the path walk with them, which is
most of the cost of a sample on a host with hundreds of containers. A cached file of a removed cgroup or
sysfs device answers ENODEV, one of an exited process ESRCH: the reader sees it as gone.

The kept descriptors are moved to 1024 and above (F_DUPFD_CLOEXEC), out of the way of anything that still
uses select(2); the soft RLIMIT_NOFILE is raised towards the hard limit to make room. When there is no
room, files are opened and closed on every read as before."""

import fcntl
import os
import resource

from lxcwatch.sources.root import open_regular

FD_BASE = 1024  # FD_SETSIZE: descriptors below stay free for select() users
RESERVE = 64
WANTED = 1 << 16


def _budget() -> int:
    """How many descriptors may be kept, after raising the soft limit where the hard limit allows."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = WANTED if hard == resource.RLIM_INFINITY else min(hard, WANTED)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    except (OSError, ValueError):
        return 0
    limit = WANTED if soft == resource.RLIM_INFINITY else soft
    return max(0, limit - FD_BASE - RESERVE)


class OpenFiles:
    """Descriptors kept per path, shared by every run of every container within one budget."""

    def __init__(self, budget: int | None = None):
        self.budget = _budget() if budget is None else budget
        self._fds: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._fds)

    def kept(self, path: str) -> bool:
        return path in self._fds

    def read(self, path: str) -> str | None:
        """The file's text, stripped; None when it is absent or gone (removed cgroup, exited process)."""
        fd = self._fds.get(path)
        if fd is not None:
            try:
                return os.pread(fd, 65536, 0).decode("utf-8", "surrogateescape").strip()
            except OSError:
                self.forget(path)
                return None
        try:
            fd = open_regular(path)  # a FIFO or device in a container's cgroup or /proc is refused, not waited on
        except OSError:
            return None
        try:
            text = os.read(fd, 65536).decode("utf-8", "surrogateescape").strip()
        except OSError:
            os.close(fd)
            return None
        if len(self._fds) < self.budget:
            try:
                self._fds[path] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_BASE)
            except OSError:
                self.budget = len(self._fds)  # out of descriptors: keep what we have, open the rest each time
        os.close(fd)
        return text

    def fd(self, path: str) -> int | None:
        """The kept descriptor of `path`, opening and keeping it if the budget allows; None otherwise."""
        if path not in self._fds:
            self.read(path)
        return self._fds.get(path)

    def directory(self, path: str) -> int | None:
        """A kept O_PATH descriptor of directory `path`, for readlink(2) relative to it; None if not kept."""
        key = path + "/"
        if key not in self._fds and len(self._fds) < self.budget:
            try:
                fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                self._fds[key] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_BASE)
            except OSError:
                self.budget = len(self._fds)
            os.close(fd)
        return self._fds.get(key)

    def forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def forget_under(self, prefixes: tuple[str, ...]) -> None:
        """Close every kept file below these directories (each given with a trailing /)."""
        for path in [p for p in self._fds if p.startswith(prefixes)]:
            self.forget(path)

    def close(self) -> None:
        for path in list(self._fds):
            self.forget(path)
