"""Root-relative reads of procfs and sysfs, so the agent runs unchanged against fixture trees."""

import os
from dataclasses import dataclass


def read_attr(path: str) -> str | None:
    """A sysfs attribute by full path; os.open costs a third of open(), and a big host reads thousands per sample."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def read_link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


@dataclass(frozen=True)
class Root:
    """A procfs or sysfs root such as /proc, /sys or tests/fixtures/hosts/tg3-pair/sys."""

    path: str

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def read(self, *parts: str) -> str:
        """The whole file in one read; OSError propagates (the collector reports it)."""
        with open(self.join(*parts), encoding="ascii", errors="replace") as f:
            return f.read()

    def attr(self, *parts: str) -> str | None:
        """A single sysfs attribute, stripped; None when absent or unreadable ("not supported")."""
        return read_attr(self.join(*parts))

    def int_attr(self, *parts: str, base: int = 10) -> int | None:
        value = self.attr(*parts)
        try:
            return int(value, base) if value is not None else None
        except ValueError:
            return None

    def link_name(self, *parts: str) -> str | None:
        """Basename of a symlink's target (`master` -> "br0", `driver` -> "tg3"); None when absent."""
        return read_link_name(self.join(*parts))

    def listdir(self, *parts: str) -> list[str]:
        try:
            return os.listdir(self.join(*parts))
        except OSError:
            return []

    def realpath(self, *parts: str) -> str | None:
        path = self.join(*parts)
        return os.path.realpath(path) if os.path.lexists(path) else None
