"""The trace format (docs/trace-format.md): trees, deltas between them, and gzip JSON Lines records."""

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

FORMAT = "lxcwatch-trace"
VERSION = 1
TRAILER = 16  # bytes reserved for the end of the gzip stream: an empty final block and CRC32 + size
TOPS = ("proc", "sys")


class TraceError(Exception):
    """A trace that cannot be read; the message names the file and the record."""


@dataclass
class Tree:
    """Files (relpath -> text) and symlinks (relpath -> target as readlink gives it) below a replay root."""

    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def paths(self) -> set[str]:
        return set(self.files) | set(self.links)


@dataclass(frozen=True)
class Record:
    t: float
    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    label: dict | None = None


def header(interval: float, host: str, started: float, kernel: str) -> dict:
    return {"format": FORMAT, "version": VERSION, "interval": interval, "host": host, "started": started,
            "kernel": kernel}


def _parents(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


def _removed(prev: Tree, curr: Tree) -> tuple[str, ...]:
    """Paths gone since prev, each as high up as possible: a vanished veth is one directory, not ten files."""
    now = curr.paths()
    dirs = {parent for p in now for parent in _parents(p)}
    out = set()
    for path in prev.paths() - now:
        top = path
        if path not in dirs:  # (a file that became a directory is removed itself, before its new files)
            while "/" in (up := top.rpartition("/")[0]) and up not in dirs:
                top = up
        out.add(top)
    return tuple(sorted(out))


def delta(prev: Tree, curr: Tree, t: float) -> Record:
    """The record that turns prev into curr; paths in sorted order, so a trace does not depend on the order of capture."""
    files = {p: text for p, text in sorted(curr.files.items()) if prev.files.get(p) != text}
    links = {p: target for p, target in sorted(curr.links.items()) if prev.links.get(p) != target}
    return Record(t, files, links, _removed(prev, curr))


def apply(tree: Tree, record: Record) -> Tree:
    """The tree after record: removals first, then new and changed files and links (what replay does on disk)."""
    gone = set(record.removed)

    def kept(entries: dict[str, str]) -> dict[str, str]:
        return {p: v for p, v in entries.items() if p not in gone and gone.isdisjoint(_parents(p))}

    files, links = kept(tree.files), kept(tree.links)
    for path in record.files:
        links.pop(path, None)
    for path in record.links:
        files.pop(path, None)
    return Tree({**files, **record.files}, {**links, **record.links})


def encode(obj: dict | Record) -> bytes:
    if isinstance(obj, Record):
        obj = {"t": obj.t, "files": obj.files, "links": obj.links, "removed": list(obj.removed),
               **({"label": obj.label} if obj.label is not None else {})}
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _check_path(path: object) -> str:
    """Relative, normalised, below proc/ or sys/: a trace from elsewhere must not write outside the root."""
    if not isinstance(path, str) or path.split("/")[0] not in TOPS or os.path.normpath(path) != path \
            or ".." in path.split("/"):
        raise ValueError(f"bad path {path!r}")
    return path


def _strings(obj: object, key: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ValueError(f"{key!r} is not an object of strings")
    for path in obj:
        _check_path(path)
    return obj


def decode(line: bytes) -> Record:
    """One record line; ValueError says what is wrong with it."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise ValueError("not valid JSON (truncated or corrupt)") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    t = obj.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0:
        raise ValueError(f"bad 't' {t!r}")
    removed = obj.get("removed", [])
    if not isinstance(removed, list):
        raise ValueError("'removed' is not a list")
    label = obj.get("label")
    if label is not None and not isinstance(label, dict):
        raise ValueError("'label' is not an object")
    if "files" not in obj:
        raise ValueError("no 'files'")
    links = _strings(obj.get("links", {}), "links")
    for target in links.values():
        if target.startswith("/"):
            raise ValueError(f"absolute link target {target!r}")
    return Record(float(t), _strings(obj["files"], "files"), links, tuple(_check_path(p) for p in removed), label)


def _check_header(line: bytes) -> dict:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        obj = None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} header")
    if obj.get("version") != VERSION:
        raise ValueError(f"version {obj.get('version')!r}, this lxcwatch reads version {VERSION}")
    return obj


def read(path: str) -> Iterator[dict | Record]:
    """The header, then each record, read lazily; TraceError names the file and the record number (1 = first)."""
    number = 0  # what is being read: 0 the header, N record N
    try:
        with gzip.open(path, "rb") as f:
            yield _check_header(f.readline())
            number = 1
            for line in f:
                yield decode(line)
                number += 1
            if number == 1:
                raise ValueError("missing: the trace has no records")
    except OSError as e:
        if not isinstance(e, gzip.BadGzipFile) and e.filename is not None:
            raise TraceError(f"{path}: {e.strerror}") from None
        raise TraceError(f"{path}: {_where(number)}: not a gzip stream or corrupt ({e})") from None
    except (EOFError, zlib.error) as e:
        raise TraceError(f"{path}: {_where(number)}: truncated or corrupt ({e})") from None
    except ValueError as e:
        raise TraceError(f"{path}: {_where(number)}: {e}") from None


def _where(number: int) -> str:
    return f"record {number}" if number else "header"


class Writer:
    """Appends lines to a gzip stream, flushed after each line, refusing any line that would make the
    finished file larger than max_size. The file on disk is readable up to the last line at all times."""

    def __init__(self, f, max_size: int):
        self.f = f
        self.max_size = max_size
        self.size = 0
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip container

    def write(self, line: bytes) -> bool:
        """False, writing nothing, when the line would pass max_size."""
        trial = self._z.copy()
        data = trial.compress(line) + trial.flush(zlib.Z_SYNC_FLUSH)
        if self.size + len(data) + TRAILER > self.max_size:
            return False
        self.f.write(data)
        self.f.flush()
        self.size += len(data)
        self._z = trial
        return True

    def close(self) -> None:
        tail = self._z.flush()
        self.f.write(tail)
        self.size += len(tail)
        self.f.close()
