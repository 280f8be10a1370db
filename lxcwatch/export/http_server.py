"""HTTP/1.1 that a scanner cannot exhaust: one selector loop accepts connections, does TLS handshakes, reads requests
and enforces timeouts and limits; a fixed pool of worker threads answers complete requests. An idle connection
holds no thread, and no thread is started after start-up."""

import email.utils
import errno
import functools
import logging
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from lxcwatch.export.http_metrics import HttpCounters
from lxcwatch.threads import name_thread

log = logging.getLogger("lxcwatch.http")

MAX_CONNECTIONS = 256  # open at once ("a few hundred", the issue); a new one closes the longest-waiting one
# Descriptors left to the rest of the agent: a connection that would take one of them closes the longest-waiting
# one instead. A margin, not a measurement: a sample opens its files one at a time, a container found ~10 it keeps.
FD_RESERVE = 32
MAX_HEAD_BYTES = 16384  # request line and headers (Prometheus sends ~300 bytes); more is answered 431
WORKERS = 4  # threads that authenticate, render, compress and start writing, all started with the server
BACKLOG = 128  # 5 (socketserver's) overflowed under 50 concurrent scrapers: SYN retries of 1-3 s (performance.md)
LOG_EVERY = 60.0  # seconds between two log lines about the same reason
TICK = 0.1  # the least time between two looks for expired timeouts: their precision
INFINITY = float("inf")
REASONS = {  # connections the agent refused or cut off, by reason
    "idle_timeout": "no new request within --web.idle-timeout",
    "request_timeout": "request headers not complete within --web.request-timeout",
    "write_timeout": "response not taken by the client within --web.request-timeout",
    "tls_handshake_timeout": "TLS handshake not complete within --web.request-timeout",
    "tls_handshake_error": "TLS handshake failed",
    "connection_limit": f"more than {MAX_CONNECTIONS} connections open",
    "descriptor_limit": "near or at the limit of open files (RLIMIT_NOFILE)",
    "bad_request": "malformed request or headers over 16 KiB",
}
CODES = (200, 400, 401, 404, 405, 431, 500, 503)  # every status the server and the app can answer
PHRASES = {code: HTTPStatus(code).phrase for code in CODES}


@dataclass(frozen=True)
class Limits:
    max_requests: int = 40  # node_exporter's --web.max-requests and default; 0: no limit
    idle_timeout: float = 120.0  # longer than Prometheus' default 1m scrape interval: keep-alive survives it
    request_timeout: float = 10.0  # Prometheus' default scrape_timeout


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | list[bytes]  # a list is written as one body, without joining it first


class _Connection:
    """One client connection, owned by the loop or (while `busy`) by one worker, never by both."""

    __slots__ = ("sock", "peer", "buffer", "state", "deadline", "reason", "first", "out", "keep", "counted")

    def __init__(self, sock: socket.socket, peer: str, state: str):
        self.sock, self.peer, self.state = sock, peer, state  # "handshake", "read", "busy", "write"
        self.buffer = bytearray()
        self.deadline, self.reason = 0.0, ""  # when the connection is cut, and why
        self.first = True  # no request answered yet
        self.out = memoryview(b"")  # what is left to write
        self.keep = False  # the connection stays open after the response being written
        self.counted = False  # the request counts in Server.in_flight until its response is written


def parse_head(head: bytes) -> tuple[Request, str]:
    """The request line and headers (without the final empty line) into a Request and its HTTP version."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
        raise ValueError(f"bad request line {lines[0][:100]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line {line[:100]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "transfer-encoding" in headers or int(headers.get("content-length", "0")) < 0:
        raise ValueError("a request with a body")  # int() raises for a malformed length as well
    if target.startswith(("http://", "https://")):  # absolute form, as a proxy sends it
        target = urlsplit(target).path or "/"
    return Request(method, unquote(target.partition("?")[0]), headers), version


def _payload(method: str, response: Response, keep: bool, version: str) -> list[bytes]:
    """Status line and headers, then (except for HEAD) the body's parts."""
    body = response.body if isinstance(response.body, list) else [response.body]
    lines = [f"HTTP/1.1 {response.status} {PHRASES.get(response.status) or HTTPStatus(response.status).phrase}",
             *(f"{k}: {v}" for k, v in response.headers),
             f"Content-Length: {sum(map(len, body))}", f"Date: {_date(int(time.time()))}"]
    if not keep:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return [head] if method == "HEAD" else [head, *body]


@functools.lru_cache(maxsize=1)  # formatted once a second, not for every response (~20 us each)
def _date(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def _text(status: int, message: str) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8")], message.encode())


def _send(sock: socket.socket, data: memoryview) -> int:
    """Bytes of `data` the kernel took without waiting. TLS without partial writes: all, or 0 and the same data again
    later (OpenSSL resumes where it stopped)."""
    try:
        return sock.send(data)
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0


def _move_down(sock: socket.socket) -> socket.socket:
    """`sock` on the lowest free descriptor (dup() takes that one), or as it was if there is none."""
    try:
        low = sock.dup()
    except OSError:
        return sock
    sock.close()
    return low


class Server:
    """Serves `app` (Request -> Response, called in a worker thread) on already listening sockets."""

    def __init__(self, sockets: list, app: Callable[[Request], Response], tls: ssl.SSLContext | None,
                 limits: Limits = Limits()):
        self.sockets, self.app, self.tls, self.limits = sockets, app, tls, limits  # limits: replaced by a reload
        self.rejected = dict.fromkeys(REASONS, 0)
        self.codes = dict.fromkeys(CODES, 0)
        self.in_flight = 0
        self._lock = threading.Lock()  # for codes and in_flight: the loop and the workers (when they wrote it all)
        self._open: set[_Connection] = set()
        self._waiting: dict[_Connection, None] = {}  # waiting for a request, the longest-waiting first
        self._logged: dict[str, float] = {}
        self._paused: dict[socket.socket, float] = {}  # listeners whose accept() failed, and when to try again
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # (connection, request, keep, version) for the workers
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # connections the workers hand back to the loop
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._due = INFINITY  # when the loop looks next for expired deadlines and paused listeners
        self._max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for s in self.sockets:
            s.setblocking(False)
            self._selector.register(s, selectors.EVENT_READ, "listener")
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads = [threading.Thread(target=self._loop, name="http", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"http-worker-{i}", daemon=True)
                          for i in range(WORKERS)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopping = True
        for _ in range(WORKERS):
            self._jobs.put(None)
        self._wake()
        for t in self._threads:
            t.join(timeout=5)

    def counters(self) -> HttpCounters:
        """The server's own figures now (export/http_metrics.py renders them)."""
        return HttpCounters(dict(self.rejected), dict(self.codes), len(self._open), self.in_flight)

    # The loop's thread

    def _loop(self) -> None:
        name_thread("http")
        while not self._stopping:
            try:
                # Asleep until a client, the wake pipe or the next deadline: a kept-alive connection (Prometheus keeps
                # its own) is due in --web.idle-timeout; ten looks a second for it cost 1.4 ms of CPU a second
                # (bench/threads.py).
                due = self._due
                events = self._selector.select(None if due == INFINITY else max(0.0, due - time.monotonic()))
                for key, mask in events:
                    if key.data == "listener":
                        self._accept(key.fileobj)
                    elif key.data == "wake":
                        self._take_back()
                    else:
                        self._ready(key.data, mask)
                now = time.monotonic()
                if now >= self._due:
                    self._tick(now)
            except Exception:  # noqa: BLE001  (a bug must not stop serving, and is logged in the agent's format)
                log.exception("http server error")
        for s in self.sockets:
            s.close()
        for conn in list(self._open):
            conn.sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full: the loop wakes anyway
            pass

    def _note(self, reason: str, message: str, **fields) -> None:
        """Log `message` about `reason` at most once per LOG_EVERY seconds."""
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY) >= LOG_EVERY:
            self._logged[reason] = now
            log.log(logging.INFO if reason == "idle_timeout" else logging.WARNING, message,
                    extra={"reason": reason, **fields})

    def _cut(self, conn: _Connection, reason: str) -> None:
        """Close `conn` for `reason` and count it."""
        self._close(conn)
        self._count(reason, conn.peer)

    def _count(self, reason: str, peer: str) -> None:
        self.rejected[reason] += 1
        self._note(reason, "http connection refused or closed", cause=REASONS[reason], peer=peer,
                   total=self.rejected[reason], connections=len(self._open))

    def _close(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._waiting.pop(conn, None)
            if conn.state != "busy":
                self._selector.unregister(conn.sock)
        self._finished(conn)
        conn.sock.close()

    def _accept(self, listener: socket.socket) -> None:
        """`listener` is readable: take the connections waiting in its backlog, and make room for each."""
        self._max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # prlimit(1) may change it under the agent
        for _ in range(BACKLOG):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:  # EMFILE, ENFILE: out of descriptors; ENOBUFS, ENOMEM: out of memory
                self._pause(listener, e)
                return
            if self._paused:
                self._paused.clear()
                log.info("accepting connections again", extra={"connections": len(self._open)})
            # Linux hands out the lowest free descriptor: one this high means all those below are taken.
            if sock.fileno() >= self._max_fds - FD_RESERVE:
                reason = "descriptor_limit"
            elif len(self._open) >= MAX_CONNECTIONS:
                reason = "connection_limit"
            else:
                reason = None
            room = bool(self._waiting)
            if reason and room:  # make room: close the connection that has waited longest for a request
                self._cut(next(iter(self._waiting)), reason)
                if reason == "descriptor_limit":
                    sock = _move_down(sock)  # to the descriptor just freed, out of the collectors' reserve
            if reason and (not room or sock.fileno() >= self._max_fds - FD_RESERVE):
                self._cut(_Connection(sock, address[0], "new"), reason)  # no room: refused
                continue
            sock.setblocking(False)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except OSError:  # the client is gone already
                    self._cut(_Connection(sock, address[0], "new"), "tls_handshake_error")
                    continue
            conn = _Connection(sock, address[0], "handshake" if self.tls is not None else "read")
            self._open.add(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self._wait(conn, time.monotonic())
            if conn.state == "handshake":
                self._handshake(conn)

    def _pause(self, listener: socket.socket, error: OSError) -> None:
        """accept() failed: try again in a second, not in a busy loop (the listener stays readable)."""
        if error.errno in (errno.EMFILE, errno.ENFILE):
            self.rejected["descriptor_limit"] += 1
        self._selector.unregister(listener)
        if not self._paused:
            log.error("cannot accept connections; retrying every second", extra={
                "err": error.strerror, "max_fds": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "connections": len(self._open)})
        self._paused[listener] = time.monotonic() + 1.0
        self._due = min(self._due, self._paused[listener])

    def _tick(self, now: float) -> None:
        for listener, when in list(self._paused.items()):
            if now >= when and listener.fileno() >= 0:
                self._paused[listener] = INFINITY  # until accept() says how it went
                self._selector.register(listener, selectors.EVENT_READ, "listener")
        for conn in [c for c in self._open if c.deadline <= now]:
            self._cut(conn, conn.reason)
        # The next look: at the earliest deadline, and TICK apart at most ten a second (their precision).
        due = min([c.deadline for c in self._open] + list(self._paused.values()), default=INFINITY)
        self._due = max(now + TICK, due)

    def _deadline(self, conn: _Connection, seconds: float, reason: str, now: float | None = None) -> None:
        """`conn` is cut for `reason` unless it moves on within `seconds`."""
        conn.deadline, conn.reason = (time.monotonic() if now is None else now) + seconds, reason
        self._due = min(self._due, conn.deadline)

    def _wait(self, conn: _Connection, now: float) -> None:
        """`conn` waits for the client: a TLS handshake or a (next) request."""
        self._waiting.pop(conn, None)
        self._waiting[conn] = None  # to the end: the longest-waiting connection is evicted first
        timeout = self.limits.request_timeout
        if conn.state == "handshake":
            self._deadline(conn, timeout, "tls_handshake_timeout", now)
        elif conn.first:
            self._deadline(conn, timeout, "request_timeout", now)
        else:
            self._deadline(conn, self.limits.idle_timeout, "idle_timeout", now)

    def _ready(self, conn: _Connection, mask: int) -> None:
        if conn.state == "handshake":
            self._handshake(conn)
        elif conn.state == "read":
            self._read(conn)
        elif conn.state == "write":
            self._write(conn)

    def _handshake(self, conn: _Connection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        except OSError:  # ssl.SSLError included: plain HTTP, an unknown CA, no certificate; or the client left
            self._cut(conn, "tls_handshake_error")
            return
        conn.state = "read"
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._wait(conn, time.monotonic())
        self._read(conn)  # the request may have come with the handshake's last message

    def _read(self, conn: _Connection) -> None:
        try:
            while data := conn.sock.recv(65536):
                conn.buffer += data
                if len(data) < 65536 and not (self.tls and conn.sock.pending()):
                    break
            else:
                self._close(conn)  # the client closed
                return
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            self._close(conn)
            return
        self._parse(conn)

    def _parse(self, conn: _Connection) -> None:
        buffer = conn.buffer
        while buffer[:2] == b"\r\n":  # empty lines between requests
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._respond(conn, "GET", _text(431, "request headers too large\n"), False, "HTTP/1.1", "bad_request")
            elif buffer and conn.reason != "request_timeout":  # a request began: it has request_timeout to finish
                self._deadline(conn, self.limits.request_timeout, "request_timeout")
            return
        head = bytes(buffer[:end])
        del buffer[:end + 4]
        self._waiting.pop(conn, None)
        try:
            request, version = parse_head(head)
        except ValueError as e:
            self._note("bad_request", "bad http request", err=str(e), peer=conn.peer)
            self._respond(conn, "GET", _text(400, "bad request\n"), False, "HTTP/1.1", "bad_request")
            return
        connection = request.headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        keep = keep and request.headers.get("content-length", "0") == "0"  # a body is never read: close after
        limit = self.limits.max_requests
        if limit and self.in_flight >= limit:
            self._note("max_requests", "too many http requests in flight, answering 503", peer=conn.peer,
                       max_requests=limit)
            self._respond(conn, request.method, _text(503, f"Limit of concurrent requests reached ({limit}), "
                                                           "try again later.\n"), keep, version)
            return
        with self._lock:
            self.in_flight += 1
        conn.counted = True
        conn.state, conn.deadline = "busy", INFINITY
        self._selector.unregister(conn.sock)
        self._jobs.put((conn, request, keep, version))

    def _respond(self, conn: _Connection, method: str, response: Response, keep: bool, version: str,
                 cut: str | None = None) -> None:
        """A response of the loop's own (400, 431, 503); `cut`: close for this reason once it is written."""
        if cut:
            self._count(cut, conn.peer)
        self._waiting.pop(conn, None)
        conn.out = memoryview(b"".join(_payload(method, response, keep and not cut, version)))
        conn.keep = keep and not cut
        self._answered(response.status)
        conn.state = "write"
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._deadline(conn, self.limits.request_timeout, "write_timeout")
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            conn.out = conn.out[_send(conn.sock, conn.out):]
        except OSError:
            self._close(conn)
            return
        if not conn.out:
            self._written(conn)

    def _written(self, conn: _Connection) -> None:
        self._finished(conn)
        if not conn.keep:
            self._close(conn)
            return
        conn.state, conn.first = "read", False
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._wait(conn, time.monotonic())
        if conn.buffer:  # pipelined: the next request is here already
            self._parse(conn)

    def _finished(self, conn: _Connection) -> None:
        """The request on `conn` no longer counts against --web.max-requests: its response is written or dropped."""
        if conn.counted:
            conn.counted = False
            with self._lock:
                self.in_flight -= 1

    def _answered(self, status: int) -> None:
        with self._lock:
            self.codes[status] = self.codes.get(status, 0) + 1

    def _take_back(self) -> None:
        """Connections whose worker is done: write the rest of the response, then wait for the next request."""
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                conn, failed = self._done.get_nowait()
            except queue.Empty:
                return
            if failed or self._stopping:
                self._close(conn)
                continue
            conn.state = "write"
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            self._deadline(conn, self.limits.request_timeout, "write_timeout")
            if not conn.out:
                self._written(conn)
            # else: the loop writes the rest as the client takes it

    # The workers' threads

    def _work(self) -> None:
        name_thread(threading.current_thread().name)
        while (job := self._jobs.get()) is not None:
            conn, request, keep, version = job
            failed = False
            try:
                response = self.app(request)
            except Exception as e:  # noqa: BLE001
                log.error("http request failed", extra={"path": request.path, "err": f"{type(e).__name__}: {e}"})
                response = _text(500, "internal server error\n")
            conn.keep = keep
            parts = _payload(request.method, response, keep, version)
            self._answered(response.status)
            # Before writing: a client given the last byte may ask again before this thread runs again.
            self._finished(conn)
            try:  # here, so that concurrent scrapes write in parallel, not one after the other in the loop
                if self.tls is None:  # scattered: the parts are not copied into one
                    sent = conn.sock.sendmsg(parts)
                else:
                    parts = [b"".join(parts)]
                    sent = _send(conn.sock, memoryview(parts[0]))
                conn.out = memoryview(b"".join(parts) if sent < sum(map(len, parts)) else b"")[sent:]
            except BlockingIOError:
                conn.out = memoryview(b"".join(parts))
            except OSError:  # the client is gone
                failed = True
            if conn.out and not failed:  # the loop writes the rest: it counts again (by at most WORKERS too many)
                conn.counted = True
                with self._lock:
                    self.in_flight += 1
            self._done.put((conn, failed))
            self._wake()
