"""Container health probes: their declarations (pure parsing) and the thread that runs them.

A probe is declared per container, one per line, either in the file given by --probes.file:

    CONTAINER PROBE tcp HOST:PORT [TIMEOUT]

or in the container's LXC config as a comment, which LXC itself ignores:

    # lxcwatch.probe = PROBE tcp HOST:PORT [TIMEOUT]

The runner connects from the agent's network namespace (the host) on its own thread; the lxc collector
only copies the latest results, so a slow or hanging target never delays a sample."""

import errno
import ipaddress
import logging
import os
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from lxcwatch.config import duration
from lxcwatch.errors import ParseError, UsageError
from lxcwatch.fsroot import CONFIG_CAP, read_text

log = logging.getLogger("lxcwatch.probes")

DEFAULT_TIMEOUT = 1.0
KINDS = ("tcp",)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CONFIG_LINE = re.compile(r"\s*#\s*lxcwatch\.probe\s*=\s*(.*)")


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    container: str
    name: str
    kind: str  # "tcp": connect() succeeds within the timeout
    host: str  # an IP address or a name (resolved on the probe thread)
    port: int
    timeout: float  # seconds

    @property
    def key(self) -> tuple[str, str]:
        return self.container, self.name


@dataclass(frozen=True, slots=True)
class ProbeResult:
    container: str
    name: str
    success: bool
    duration_seconds: float  # until connected, refused, or the timeout
    timestamp: float  # wall clock when the attempt started
    error: str = ""


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, with IPv6 addresses in brackets ([::1]:80)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: want [IPV6]:PORT")
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host or ":" in host:
            raise ValueError(f"bad address {text!r}: want HOST:PORT (IPv6 in brackets)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}: want 1-65535")
    return host, int(port)


def parse_spec(container: str, fields: list[str]) -> ProbeSpec:
    """PROBE tcp HOST:PORT [TIMEOUT] -> ProbeSpec; ValueError with the reason."""
    if not 3 <= len(fields) <= 4:
        raise ValueError(f"expected PROBE tcp HOST:PORT [TIMEOUT], found {len(fields)} fields")
    name, kind, address = fields[:3]
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad probe name {name!r}: letters, digits, '_', '.', '-' only")
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r}: want {', '.join(KINDS)}")
    host, port = parse_address(address)
    timeout = DEFAULT_TIMEOUT
    if len(fields) == 4:
        try:
            timeout = duration(fields[3])
        except UsageError as e:
            raise ValueError(str(e)) from None
    return ProbeSpec(container, name, kind, host, port, timeout)


def parse_file(text: str, source: str) -> tuple[ProbeSpec, ...]:
    """The --probes.file format: CONTAINER PROBE tcp HOST:PORT [TIMEOUT]; '#' comments, blank lines."""
    specs: dict[tuple[str, str], ProbeSpec] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            spec = parse_spec(fields[0], fields[1:])
        except ValueError as e:
            raise ParseError(source, str(e), number) from None
        if spec.key in specs:
            raise ParseError(source, f"probe {spec.name!r} of {spec.container!r} declared twice", number)
        specs[spec.key] = spec
    return tuple(specs.values())


def parse_config_line(container: str, line: str) -> ProbeSpec | None:
    """A `# lxcwatch.probe = ...` comment of an LXC config, None for any other line; ValueError if malformed."""
    m = _CONFIG_LINE.fullmatch(line)
    return parse_spec(container, m.group(1).split()) if m else None


def check_file(path: str) -> None:
    """Refuse an unreadable or malformed --probes.file at start-up (UsageError names file and line)."""
    try:
        parse_file(read_text(path, CONFIG_CAP), path)
    except OSError as e:
        raise UsageError(f"--probes.file={path}: {e.strerror or e}") from None
    except ParseError as e:
        raise UsageError(f"--probes.file: {e}") from None


class ProbeFile:
    """The --probes.file, read again when it changes; a broken edit keeps the probes it replaced."""

    def __init__(self, path: str):
        self.path = path
        self._stamp: tuple | None = None
        self._specs: tuple[ProbeSpec, ...] = ()
        self.error = ""

    def specs(self) -> tuple[ProbeSpec, ...]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._specs = parse_file(read_text(self.path, CONFIG_CAP), self.path)
                self._stamp = stamp
                if self.error:
                    log.info("probes file reloaded", extra={"file": self.path})
                self.error = ""
        except (OSError, ParseError) as e:
            message = str(e) if isinstance(e, ParseError) else f"{self.path}: {e.strerror or e}"
            if message != self.error:
                log.error("probes file not reloaded; keeping the previous probes", extra={"err": message})
            self.error = message
        return self._specs


def _addresses(spec: ProbeSpec) -> tuple[int, tuple]:
    """(family, sockaddr) of the target; names are resolved here, on the probe thread."""
    try:
        ip = ipaddress.ip_address(spec.host)
        if ip.version == 6:
            return socket.AF_INET6, (spec.host, spec.port, 0, 0)
        return socket.AF_INET, (spec.host, spec.port)
    except ValueError:
        family, _, _, _, sockaddr = socket.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM)[0]
        return family, sockaddr


class ProbeRunner:
    """Runs every declared probe once per interval on one thread, all attempts of a round concurrently
    (non-blocking connect + selectors); results are read with `results()` from any thread."""

    def __init__(self, interval: float):
        self.interval = interval
        self._specs: tuple[ProbeSpec, ...] = ()
        self._results: dict[tuple[str, str], ProbeResult] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, specs: tuple[ProbeSpec, ...]) -> None:
        """Replace the declared probes; the thread starts with the first ones and runs a round at once."""
        if specs == self._specs:
            return
        with self._lock:
            self._specs = specs
            keys = {s.key for s in specs}
            self._results = {k: r for k, r in self._results.items() if k in keys}
        self._changed.set()
        if specs and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="probes", daemon=True)
            self._thread.start()

    def results(self) -> tuple[ProbeResult, ...]:
        with self._lock:
            return tuple(self._results[k] for k in sorted(self._results))

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._changed.clear()
            started = time.monotonic()
            with self._lock:
                specs = self._specs
            try:
                results = run_round(specs, self._stop)
            except Exception:  # a bug here must not end probing
                log.exception("probe round failed")
                results = {}
            with self._lock:
                current = {s.key for s in self._specs}
                self._results.update({k: r for k, r in results.items() if k in current})
            wait = max(0.0, started + self.interval - time.monotonic())
            if self._changed.wait(wait):  # new declarations: probe them now rather than an interval later
                continue


def run_round(specs: tuple[ProbeSpec, ...], stop: threading.Event | None = None) -> dict[tuple[str, str], ProbeResult]:
    """One attempt per probe, concurrently; returns when every attempt ended or timed out."""
    results: dict[tuple[str, str], ProbeResult] = {}
    pending: dict[socket.socket, tuple[ProbeSpec, float, float]] = {}  # sock -> (spec, t0, wall)
    selector = selectors.DefaultSelector()

    def done(spec: ProbeSpec, t0: float, wall: float, ok: bool, error: str = "") -> None:
        results[spec.key] = ProbeResult(spec.container, spec.name, ok, time.monotonic() - t0, wall, error)

    try:
        for spec in specs:
            wall, t0 = time.time(), time.monotonic()
            try:
                family, sockaddr = _addresses(spec)
                sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            except OSError as e:
                done(spec, t0, wall, False, str(e))
                continue
            code = sock.connect_ex(sockaddr)
            if code == 0:
                sock.close()
                done(spec, t0, wall, True)
            elif code != errno.EINPROGRESS:
                sock.close()
                done(spec, t0, wall, False, os.strerror(code))
            else:
                pending[sock] = (spec, t0, wall)
                selector.register(sock, selectors.EVENT_WRITE)
        while pending and not (stop is not None and stop.is_set()):
            now = time.monotonic()
            for sock, (spec, t0, wall) in list(pending.items()):
                if now - t0 >= spec.timeout:
                    selector.unregister(sock)
                    sock.close()
                    del pending[sock]
                    results[spec.key] = ProbeResult(spec.container, spec.name, False, spec.timeout, wall, "timeout")
            if not pending:
                break
            deadline = min(t0 + spec.timeout for spec, t0, _ in pending.values())
            for key, _ in selector.select(max(0.0, min(deadline - time.monotonic(), 0.5))):
                sock = key.fileobj
                spec, t0, wall = pending.pop(sock)
                selector.unregister(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.close()
                done(spec, t0, wall, code == 0, "" if code == 0 else os.strerror(code))
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    return results
