"""/proc/locks: the file locks the kernel grants, and to whom (fs/locks.c, lock_get_status)."""

from dataclasses import dataclass

from lxcwatch.errors import ParseError

SOURCE = "locks"


@dataclass(frozen=True, slots=True)
class Lock:
    kind: str  # FLOCK, POSIX, OFDLCK, ACCESS, LEASE, DELEG
    pid: int  # 0: a process this pid namespace cannot see; -1: an OFD lock, owned by no process
    file: tuple[int, int, int] | None  # (major, minor, inode) of the file; None: *NOINODE* ("<none>:0")


def parse(text: str) -> tuple[Lock, ...]:
    """The granted locks: "1: FLOCK  ADVISORY  WRITE 4242 fd:00:2531448 0 EOF", MAJ and MIN in hex. A line with
    "->" after its id is a lock blocked behind the one above it: not granted, left out."""
    locks = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[1:2] == ["->"]:
            continue
        if len(fields) < 6 or not fields[0].endswith(":"):
            raise ParseError(SOURCE, "expected ID: CLASS MODE TYPE PID MAJ:MIN:INODE START END", number)
        try:
            pid = int(fields[4])
            if fields[5].startswith("<none>"):
                file = None
            else:
                major, minor, inode = fields[5].split(":")
                file = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            raise ParseError(SOURCE, f"bad PID or MAJ:MIN:INODE {fields[4]} {fields[5]!r}", number) from None
        locks.append(Lock(fields[1], pid, file))
    return tuple(locks)


def flock_holders(locks: tuple[Lock, ...], file: tuple[int, int, int]) -> set[int]:
    """The pids holding a flock(2) on `file` (major, minor, inode)."""
    return {lock.pid for lock in locks if lock.kind == "FLOCK" and lock.file == file}
