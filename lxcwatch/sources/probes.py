"""Runs the container health probes (lxcwatch/core/probe_spec.py declares them) on their own thread.

The runner connects from the agent's network namespace (the host), each probe on its own schedule; the lxc
collector only copies the latest results, so a slow or hanging target never delays a sample nor another probe."""

import errno
import ipaddress
import logging
import os
import selectors
import socket
import threading
import time

from lxcwatch.core.probe_spec import ProbeResult, ProbeSpec, parse_file
from lxcwatch.errors import ParseError, UsageError
from lxcwatch.sources.root import CONFIG_CAP, read_text

log = logging.getLogger("lxcwatch.probes")


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


class Attempts:
    """TCP connects in flight, all on one selector: started one by one, each ending on its own (connected,
    refused, or its timeout) without waiting for the others."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.pending: dict[socket.socket, tuple[ProbeSpec, float, float]] = {}  # sock -> (spec, t0, wall)

    def keys(self) -> set[tuple[str, str]]:
        return {spec.key for spec, _, _ in self.pending.values()}

    def start(self, spec: ProbeSpec) -> ProbeResult | None:
        """Begin one attempt; its result at once when the connect ends immediately, else None (in flight)."""
        wall, t0 = time.time(), time.monotonic()
        try:
            family, sockaddr = _addresses(spec)
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as e:
            return _result(spec, t0, wall, False, str(e))
        code = sock.connect_ex(sockaddr)
        if code == errno.EINPROGRESS:
            self.pending[sock] = (spec, t0, wall)
            self.selector.register(sock, selectors.EVENT_WRITE)
            return None
        sock.close()
        return _result(spec, t0, wall, code == 0, "" if code == 0 else os.strerror(code))

    def next_timeout(self) -> float | None:
        return min((t0 + spec.timeout for spec, t0, _ in self.pending.values()), default=None)

    def wait(self, until: float) -> list[ProbeResult]:
        """Attempts that ended by `until` (monotonic), or earlier as soon as one did."""
        results = self._expire()
        if results:
            return results
        end = min(until, self.next_timeout() or until)
        for key, _ in self.selector.select(max(0.0, end - time.monotonic())):
            if key.fileobj in self.pending:
                results.append(self._end(key.fileobj))
        return results + self._expire()

    def _expire(self) -> list[ProbeResult]:
        now, out = time.monotonic(), []
        for sock, (spec, t0, wall) in list(self.pending.items()):
            if now - t0 >= spec.timeout:
                self._drop(sock)
                out.append(ProbeResult(spec.container, spec.name, False, spec.timeout, wall, "timeout"))
        return out

    def _end(self, sock: socket.socket) -> ProbeResult:
        spec, t0, wall = self.pending[sock]
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._drop(sock)
        return _result(spec, t0, wall, code == 0, "" if code == 0 else os.strerror(code))

    def _drop(self, sock: socket.socket) -> None:
        del self.pending[sock]
        self.selector.unregister(sock)
        sock.close()

    def cancel(self, keys: set[tuple[str, str]]) -> None:
        for sock, (spec, _, _) in list(self.pending.items()):
            if spec.key in keys:
                self._drop(sock)

    def close(self) -> None:
        for sock in list(self.pending):
            self._drop(sock)
        self.selector.close()


def _result(spec: ProbeSpec, t0: float, wall: float, ok: bool, error: str = "") -> ProbeResult:
    return ProbeResult(spec.container, spec.name, ok, time.monotonic() - t0, wall, error)


class ProbeRunner:
    """Runs every declared probe once per interval on one thread, each on its own schedule: an attempt that
    hangs until its timeout delays no other probe's attempts or results (non-blocking connects on one
    selector). Results are read with `results()` from any thread."""

    def __init__(self, interval: float):
        self.interval = interval
        self._specs: tuple[ProbeSpec, ...] = ()
        self._results: dict[tuple[str, str], ProbeResult] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, specs: tuple[ProbeSpec, ...]) -> None:
        """Replace the declared probes; the thread starts with the first ones, and new probes run at once."""
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
        attempts = Attempts()
        due: dict[tuple[str, str], float] = {}  # probe -> when its next attempt starts (monotonic)
        try:
            while not self._stop.is_set():
                try:
                    due = self._step(attempts, due)
                except Exception:  # a bug here must not end probing
                    log.exception("probe step failed")
                    self._stop.wait(self.interval)
        finally:
            attempts.close()

    def _step(self, attempts: Attempts, due: dict) -> dict:
        """Start the attempts that are due, then wait (at most 0.25 s, to see new declarations) for any to end."""
        if self._changed.is_set():
            self._changed.clear()
        with self._lock:
            specs = {s.key: s for s in self._specs}
        attempts.cancel({spec.key for spec, _, _ in attempts.pending.values() if specs.get(spec.key) != spec})
        due = {k: t for k, t in due.items() if k in specs}
        now, ended = time.monotonic(), []
        busy = attempts.keys()
        for key, spec in specs.items():
            if key not in busy and due.get(key, now) <= now:
                due[key] = now + self.interval
                result = attempts.start(spec)
                if result is not None:
                    ended.append(result)
        next_start = min((t for k, t in due.items() if k not in attempts.keys()), default=now + self.interval)
        ended += attempts.wait(min(next_start, now + 0.25))
        if ended:
            with self._lock:
                current = {s.key for s in self._specs}
                ended = [r for r in ended if (r.container, r.name) in current]
                before = {(r.container, r.name): self._results.get((r.container, r.name)) for r in ended}
                self._results.update({(r.container, r.name): r for r in ended})
            for r in ended:
                _log_change(before[r.container, r.name], r)
        return due


def _log_change(before: ProbeResult | None, after: ProbeResult) -> None:
    """A probe's failure is logged when it starts (or its reason changes), its recovery once."""
    if not after.success and (before is None or before.success or before.error != after.error):
        log.warning("probe failed", extra={"container": after.container, "probe": after.name, "err": after.error})
    elif after.success and before is not None and not before.success:
        log.info("probe recovered", extra={"container": after.container, "probe": after.name})
