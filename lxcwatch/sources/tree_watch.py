"""Change notices for directories of a plain-file tree (fixtures, replays, the bench) by inotify, so that a tree's
files are re-read only after something changed them, as the live host's links are on netlink events. A kernel
sysfs mounted elsewhere, or any filesystem whose files change without a write through this kernel (kernfs, procfs,
FUSE, NFS), gets no watcher: its files are read every time."""

import ctypes
import os
import struct

# statfs f_type (linux/magic.h) of filesystems whose every change is a write through the VFS, which queues the
# inotify events before the write returns.
WATCHABLE = {0xEF53: "ext2/3/4", 0x01021994: "tmpfs", 0x858458F6: "ramfs", 0x58465342: "xfs",
             0x9123683E: "btrfs", 0x794C7630: "overlayfs", 0xF2F52010: "f2fs", 0x2FC12FC1: "zfs"}
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name

_libc = ctypes.CDLL(None, use_errno=True)


def fs_type(path: str) -> int | None:
    """statfs(2) f_type of the filesystem `path` is on (the first field of struct statfs); None if unknown."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def watchable(path: str) -> bool:
    return fs_type(path) in WATCHABLE


class DirWatch:
    """Directories watched under keys. `changes()` gives the (key, entry name) pairs with news since the last call
    ("" for the directory itself, which is then no longer watched), or None when the kernel dropped notices."""

    def __init__(self):
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self.fd = fd
        self._keys: dict[int, set] = {}  # watch descriptor -> keys (two names may lead to one directory)
        self._wd: dict[object, int] = {}

    def watch(self, key, path: str) -> bool:
        """Watch the directory `path` (symlinks followed) for `key`; False if it cannot (gone, out of watches)."""
        self.unwatch(key)
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            return False
        self._wd[key] = wd
        self._keys.setdefault(wd, set()).add(key)
        return True

    def unwatch(self, key) -> None:
        wd = self._wd.pop(key, None)
        if wd is None:
            return
        keys = self._keys.get(wd, set())
        keys.discard(key)
        if not keys:
            self._keys.pop(wd, None)
            _libc.inotify_rm_watch(self.fd, wd)  # its IN_IGNORED then names no key

    def changes(self) -> set[tuple[object, str]] | None:
        out, lost = set(), False
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return None if lost else out
            offset = 0
            while offset < len(data):
                wd, mask, _, size = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size:offset + EVENT.size + size].rstrip(b"\0")
                offset += EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    lost = True
                    continue
                keys = self._keys.get(wd, ())
                entry = "" if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) else os.fsdecode(name)
                out.update((key, entry) for key in keys)
                if mask & IN_IGNORED:  # the directory is gone: so is its watch
                    for key in self._keys.pop(wd, ()):
                        self._wd.pop(key, None)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_for(path: str) -> DirWatch | None:
    """A watcher for directories on the filesystem of `path`, or None when notices cannot be trusted there or
    inotify is unavailable (out of instances: fs.inotify.max_user_instances)."""
    if not watchable(path):
        return None
    try:
        return DirWatch()
    except OSError:
        return None
