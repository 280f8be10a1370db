"""A file whose reads block in the kernel: a one-file FUSE filesystem mounted over a file of a test tree.

What a sysfs net attribute does while a driver reset holds rtnl_lock, or a procfs file on a hung host: the
reader sleeps in the kernel, where no O_NONBLOCK or size cap reaches. It speaks the FUSE protocol of
<linux/fuse.h> on /dev/fuse directly (no libfuse): lookups, getattr and open are answered, every read is
held until SIGUSR1, after which reads get the content of SOURCE. An interrupted read (the reader is killed)
is answered with EINTR, so a killed reader never hangs in D state. Needs root.

    python3 tests/support/stuckfs.py TARGET SOURCE   # prints "mounted" when TARGET blocks; SIGTERM unmounts
"""

import ctypes
import errno
import os
import signal
import struct
import sys

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding
OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT, INTERRUPT, BATCH_FORGET = 1, 2, 3, 14, 15, 18, 25, 26, 36, 42
NO_REPLY = {FORGET, BATCH_FORGET, INTERRUPT}
FOPEN_DIRECT_IO = 1  # reads reach the server whatever size getattr reported (procfs reports 0)
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2

libc = ctypes.CDLL(None, use_errno=True)


class StuckFile:
    def __init__(self, target: str, source: str):
        self.target = target
        with open(source, "rb") as f:
            self.content = f.read()
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        self.held: dict[int, tuple[int, int]] = {}  # unique of a held read -> (offset, size)
        self.free = False

    def mount(self) -> None:
        options = f"fd={self.fd},rootmode=100444,user_id=0,group_id=0,allow_other".encode()
        if libc.mount(b"stuckfs", self.target.encode(), b"fuse", MS_NOSUID | MS_NODEV, options) != 0:
            raise OSError(ctypes.get_errno(), f"mount fuse on {self.target}")

    def unmount(self) -> None:
        libc.umount2(self.target.encode(), MNT_DETACH)
        os.close(self.fd)  # aborts the connection: anything still held fails with ENOTCONN

    def reply(self, unique: int, payload: bytes = b"", error: int = 0) -> None:
        try:
            os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique) + payload)
        except OSError as e:
            if e.errno != errno.ENOENT:  # the request was interrupted meanwhile
                raise

    def attr(self) -> bytes:
        # ino, size, blocks, atime, mtime, ctime, atimensec, mtimensec, ctimensec, mode, nlink, uid, gid, rdev,
        # blksize, flags
        return struct.pack("<QQQQQQIIIIIIIIII", 1, 4096, 8, 0, 0, 0, 0, 0, 0, 0o100444, 1, 0, 0, 0, 4096, 0)

    def release(self, *_) -> None:
        """SIGUSR1: answer the held reads and every later one."""
        self.free = True
        for unique, (offset, size) in list(self.held.items()):
            self.reply(unique, self.content[offset:offset + size])
        self.held.clear()

    def handle(self, opcode: int, unique: int, body: bytes) -> None:
        if opcode == INIT:
            major, minor = struct.unpack_from("<II", body)
            # major, minor, max_readahead, flags, max_background, congestion_threshold, max_write, time_gran,
            # max_pages, map_alignment, flags2, max_stack_depth, unused[6]
            self.reply(unique, struct.pack("<IIIIHHIIHHII24x", 7, min(minor, 31), 0, 0, 16, 12, 1 << 17, 1, 0, 0, 0, 0))
        elif opcode == GETATTR:
            self.reply(unique, struct.pack("<QII", 0, 0, 0) + self.attr())  # attr_valid 0: ask every time
        elif opcode == LOOKUP:
            self.reply(unique, error=errno.ENOENT)
        elif opcode == OPEN:
            self.reply(unique, struct.pack("<QII", 1, FOPEN_DIRECT_IO, 0))
        elif opcode == READ:
            _fh, offset, size = struct.unpack_from("<QQI", body)
            if self.free:
                self.reply(unique, self.content[offset:offset + size])
            else:
                self.held[unique] = (offset, size)
        elif opcode == INTERRUPT:
            (target,) = struct.unpack_from("<Q", body)
            if self.held.pop(target, None) is not None:
                self.reply(target, error=errno.EINTR)
        elif opcode in (RELEASE, FLUSH):
            self.reply(unique)
        elif opcode not in NO_REPLY:
            self.reply(unique, error=errno.ENOSYS)

    def serve(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 18)
            except OSError as e:
                if e.errno == errno.ENODEV:  # unmounted
                    return
                raise
            _length, opcode, unique, *_ = IN_HEADER.unpack_from(data)
            self.handle(opcode, unique, data[IN_HEADER.size:])
            if self.free and self.held:  # SIGUSR1 came while this read was being held
                self.release()


def main(target: str, source: str) -> None:
    fs = StuckFile(target, source)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGUSR1, fs.release)
    fs.mount()
    try:
        print("mounted", flush=True)
        fs.serve()
    finally:
        fs.unmount()


if __name__ == "__main__":
    main(*sys.argv[1:3])
