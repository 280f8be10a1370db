"""Replays a trace into a procfs/sysfs tree (DIR/proc, DIR/sys) that the unchanged agent reads."""

import itertools
import os
import shutil
import signal
import threading
import time

from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.traces import trace

TMP = ".lxcwatch-tmp"  # beside proc/ and sys/: a temporary file never shows up in a directory the agent lists


def add_arguments(p) -> None:
    p.add_argument("trace", metavar="FILE", help="trace written by `lxcwatch record` (*.trace.gz)")
    p.add_argument("--out-root", dest="out_root", required=True, metavar="DIR",
                   help="directory to replay into (absent or empty); run the agent with --path.procfs DIR/proc "
                        "--path.sysfs DIR/sys")
    p.add_argument("--speed", default="1.0", metavar="FACTOR",
                   help="replay speed: 1.0 real time, 2.0 twice as fast, 0 as fast as possible (default 1.0)")
    p.add_argument("--loop", action="store_true", help="start again from the first record after the last, until stopped")


class TreeWriter:
    """Applies records to a directory: removals, then files, then symlinks, each file by temp-file + rename."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.real = os.path.realpath(root)
        self.tmp = os.path.join(self.root, TMP)
        os.makedirs(self.tmp, exist_ok=True)
        self._names = itertools.count()

    def apply(self, record: trace.Record) -> None:
        removed = [self._path(p) for p in record.removed]
        for path in sorted(removed, key=lambda p: not os.path.islink(p)):  # entry points (links) go first
            _remove(path)
        for rel, text in record.files.items():
            self._write_file(self._path(rel), text.encode("utf-8", "surrogateescape"))
        for rel, target in record.links.items():  # links last: class/net/IF appears once its files are there
            self._write_link(self._path(rel), target)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _path(self, rel: str) -> str:
        """The absolute path of rel; refuses a parent that is a symlink leading out of the root."""
        path = os.path.join(self.root, rel)
        parent = os.path.realpath(os.path.dirname(path))
        if parent != self.real and not parent.startswith(self.real + os.sep):
            raise ValueError(f"{rel} leads out of the replay root through a symlink")
        return path

    def _temporary(self) -> str:
        return os.path.join(self.tmp, str(next(self._names)))

    def _write_file(self, path: str, data: bytes) -> None:
        tmp = self._temporary()
        with open(tmp, "wb") as f:
            f.write(data)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)

    def _write_link(self, path: str, target: str) -> None:
        tmp = self._temporary()
        os.symlink(target, tmp)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if not 0 <= speed < float("inf"):
        raise UsageError(f"invalid --speed {text!r}: want a factor such as 1.0, 10 or 0 (as fast as possible)")
    return speed


def _check_root(root: str) -> None:
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise UsageError(f"--out-root {root}: exists and is not an empty directory")


def replay(path: str, writer: TreeWriter, speed: float, loop: bool, stop: threading.Event) -> None:
    """Applies every record at t/speed seconds after the first; with loop, turns the tree back into the first
    record's and starts again."""
    first, tree = None, trace.Tree()
    while True:
        start = time.monotonic()
        for number, record in enumerate(_records(path), 1):
            if stop.wait(start + record.t / speed - time.monotonic() if speed else 0):
                return
            if loop:  # keep the tree in memory: the next pass starts by turning it back into the first record's
                if first is None:
                    first = trace.apply(tree, record)
                elif number == 1:
                    record = trace.delta(tree, first, record.t)
                tree = trace.apply(tree, record)
            try:
                writer.apply(record)
            except ValueError as e:
                raise RuntimeFailure(f"{path}: record {number}: {e}") from None
        if not loop:
            return


def _records(path: str):
    records = trace.read(path)
    next(records)  # the header: checked by trace.read, nothing in it changes the replay
    return records


def run(args) -> int:
    speed = _speed(args.speed)
    _check_root(args.out_root)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        writer = TreeWriter(args.out_root)
        try:
            replay(args.trace, writer, speed, args.loop, stop)
        finally:
            writer.close()
    except trace.TraceError as e:
        raise RuntimeFailure(str(e)) from None
    except OSError as e:
        raise RuntimeFailure(f"--out-root {args.out_root}: {e}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
