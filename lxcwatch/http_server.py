"""HTTP/1.1 that a scanner cannot exhaust: one asyncio loop accepts, reads requests and enforces timeouts and limits;
a fixed pool of worker threads answers them, so an idle connection holds no thread."""

import asyncio
import email.utils
import errno
import logging
import queue
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from lxcwatch.exposition import Family

log = logging.getLogger("lxcwatch.http")

MAX_CONNECTIONS = 256  # open at once; a new one closes the one that has waited longest for a request
FD_RESERVE = 32  # descriptors left to the collectors: a connection that would take one of them is refused
MAX_HEAD_BYTES = 16384  # request line and headers; more is answered 431
WORKERS = 4  # threads that authenticate, render and compress, all started with the server
BACKLOG = 128  # 5 (socketserver's) overflowed under 50 concurrent scrapers: SYN retries of 1-3 s (performance.md)
LOG_EVERY = 60.0  # seconds between two log lines about the same reason
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
    body: bytes


class _Cut(Exception):
    """The agent ends the connection for `reason`, a key of REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    peer: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    started: bool = False  # a transport owns the socket
    cut_for: str | None = None

    def cut(self, reason: str) -> None:
        if self.cut_for is None:
            self.cut_for = reason
        if self.writer is not None:
            self.writer.transport.abort()
        elif not self.started:
            self.sock.close()
        # else: a transport is being made; _serve() sees cut_for and closes it


class _Workers:
    """A fixed pool of threads: none is started after start-up, so a thread limit cannot break serving."""

    def __init__(self, count: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"http-worker-{i}", daemon=True) for i in range(count)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            try:
                outcome = (fn(*args), None)
            except Exception as e:  # noqa: BLE001  (handed to the connection, which logs it)
                outcome = (None, e)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop closed meanwhile: the server is stopping
                pass

    async def run(self, fn: Callable, *args):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


def _settle(future: asyncio.Future, result, error: Exception | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


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
    if target.startswith(("http://", "https://")):  # absolute form, as a proxy sends it
        target = urlsplit(target).path or "/"
    return Request(method, unquote(target.partition("?")[0]), headers), version


def _head(status: int, headers: list[tuple[str, str]], length: int, keep: str | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {length}", f"Date: {email.utils.formatdate(usegmt=True)}"]
    if keep:
        lines.append(f"Connection: {keep}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _text(status: int, message: str) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8")], message.encode())


class Server:
    """Serves `app` (Request -> Response, called in a worker thread) on already listening sockets."""

    def __init__(self, sockets: list, app: Callable[[Request], Response], tls: ssl.SSLContext | None,
                 limits: Limits = Limits()):
        self.sockets, self.app, self.tls, self.limits = sockets, app, tls, limits
        self.rejected = dict.fromkeys(REASONS, 0)
        self.codes = dict.fromkeys(CODES, 0)
        self.in_flight = 0
        self._open: set[_Connection] = set()
        self._waiting: dict[_Connection, None] = {}  # waiting for a request, the longest-waiting first
        self._logged: dict[str, float] = {}
        self._starved = False  # accept() failed (e.g. out of descriptors) and has not succeeded since
        self._workers: _Workers | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._workers = _Workers(WORKERS)
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="http", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # the loop already ended
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._workers is not None:
            self._workers.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._stopped = asyncio.Event()
        for s in self.sockets:
            s.setblocking(False)
            self._loop.add_reader(s, self._accept, s)
        self._ready.set()
        await self._stopped.wait()
        for s in self.sockets:
            self._loop.remove_reader(s)
            s.close()
        for conn in list(self._open):
            self._forget(conn)
            conn.cut("shutdown")

    def families(self) -> list[Family]:
        """The server's own figures, read at scrape time."""
        rejected = Family("lxcwatch_http_connections_rejected", "counter",
                          "Connections the agent refused or cut off, by reason (docs/security.md).", ("reason",))
        for reason in REASONS:
            rejected.add([reason], self.rejected[reason])
        requests = Family("lxcwatch_http_requests", "counter", "HTTP requests answered, by status code.", ("code",))
        for code in CODES:
            requests.add([str(code)], self.codes[code])
        return [rejected, requests,
                Family("lxcwatch_http_connections_open", "gauge", "HTTP connections open.", (), [((), len(self._open))]),
                Family("lxcwatch_http_requests_in_flight", "gauge", "HTTP requests being answered (--web.max-requests).",
                       (), [((), self.in_flight)])]

    def _note(self, reason: str, message: str, **fields) -> None:
        """Log `message` about `reason` at most once per LOG_EVERY seconds."""
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY) >= LOG_EVERY:
            self._logged[reason] = now
            log.log(logging.INFO if reason == "idle_timeout" else logging.WARNING, message,
                    extra={"reason": reason, **fields})

    def _count(self, reason: str, peer: str) -> None:
        self.rejected[reason] += 1
        self._note(reason, "http connection refused or closed", cause=REASONS[reason], peer=peer,
                   total=self.rejected[reason], connections=len(self._open))

    def _loop_error(self, loop, context: dict) -> None:
        error = context.get("exception")
        log.error(context.get("message", "http server error"),
                  extra={"err": f"{type(error).__name__}: {error}" if error else ""})

    def _accept(self, listener: socket.socket) -> None:
        """`listener` is readable: take the connections waiting in its backlog, and make room for each."""
        for _ in range(BACKLOG):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:  # EMFILE, ENFILE: out of descriptors; ENOBUFS, ENOMEM: out of memory
                self._pause(listener, e)
                return
            if self._starved:
                self._starved = False
                log.info("accepting connections again", extra={"connections": len(self._open)})
            conn = _Connection(sock, address[0])
            # Linux hands out the lowest free descriptor: one this high means all those below are taken.
            if sock.fileno() >= resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_RESERVE:
                reason = "descriptor_limit"
            elif len(self._open) >= MAX_CONNECTIONS:
                reason = "connection_limit"
            else:
                reason = None
            if reason and self._waiting:  # make room: close the connection that has waited longest for a request
                oldest = next(iter(self._waiting))
                self._forget(oldest)
                oldest.cut(reason)
                self._count(reason, oldest.peer)
            if reason == "descriptor_limit" or (reason and not self._waiting):
                # This descriptor is one of the reserve: refused. The evicted one is freed on the loop's next turn.
                conn.cut(reason)
                self._count(reason, conn.peer)
                return
            sock.setblocking(False)
            self._open.add(conn)
            self._waiting[conn] = None
            self._loop.create_task(self._start(conn))

    def _pause(self, listener: socket.socket, error: OSError) -> None:
        """accept() failed: try again in a second, not in a busy loop (the listener stays readable)."""
        if error.errno in (errno.EMFILE, errno.ENFILE):
            self.rejected["descriptor_limit"] += 1
        self._loop.remove_reader(listener)
        self._loop.call_later(1.0, self._resume, listener)
        if not self._starved:
            self._starved = True
            log.error("cannot accept connections; retrying every second", extra={
                "err": error.strerror, "max_fds": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "connections": len(self._open)})

    def _resume(self, listener: socket.socket) -> None:
        if not self._stopped.is_set():
            self._loop.add_reader(listener, self._accept, listener)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        self._waiting.pop(conn, None)

    async def _start(self, conn: _Connection) -> None:
        if conn.cut_for is not None:
            return  # closed to make room before it started
        conn.reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
        # A client_connected_cb also makes the stream server-side, as StreamWriter.start_tls() wants.
        protocol = asyncio.StreamReaderProtocol(conn.reader, lambda reader, writer: self._serve(conn, writer))
        conn.started = True
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn.sock)
        except OSError:  # the client is gone already
            self._forget(conn)
            conn.sock.close()

    async def _serve(self, conn: _Connection, writer: asyncio.StreamWriter) -> None:
        conn.writer = writer
        try:
            if conn.cut_for is not None:
                return
            await self._converse(conn)
        except _Cut as e:
            conn.cut(e.reason)
        except (OSError, asyncio.IncompleteReadError):  # the client went away
            writer.transport.abort()
        except Exception:  # noqa: BLE001  (a bug must cost this connection only, and be logged in the agent's format)
            log.exception("http connection failed", extra={"peer": conn.peer})
            writer.transport.abort()
        finally:
            if conn in self._open:
                self._forget(conn)
                if conn.cut_for:
                    self._count(conn.cut_for, conn.peer)
            if not writer.transport.is_closing():
                writer.close()

    async def _converse(self, conn: _Connection) -> None:
        timeout = self.limits.request_timeout
        if self.tls is not None:
            self._waiting[conn] = None
            try:
                async with asyncio.timeout(timeout):
                    await conn.writer.start_tls(self.tls, ssl_handshake_timeout=timeout + 1)
            except TimeoutError:
                raise _Cut("tls_handshake_timeout") from None
            except (OSError, EOFError):  # ssl.SSLError included: plain HTTP, an unknown CA, no certificate
                if conn.cut_for is None:
                    raise _Cut("tls_handshake_error") from None
                raise
        conn.writer.transport.set_write_buffer_limits(high=0)  # drain() waits until the kernel has it all
        first = True
        while conn.cut_for is None:  # cut to make room, it may still read what it had buffered: no more
            self._waiting.pop(conn, None)
            self._waiting[conn] = None  # to the end: the longest-waiting connection is evicted first
            try:
                async with asyncio.timeout(timeout if first else self.limits.idle_timeout):
                    start = await conn.reader.read(1)
            except TimeoutError:
                raise _Cut("request_timeout" if first else "idle_timeout") from None
            if not start:
                return  # the client closed
            try:
                async with asyncio.timeout(timeout):
                    head = (start + await conn.reader.readuntil(b"\r\n\r\n")).lstrip(b"\r\n")
            except TimeoutError:
                raise _Cut("request_timeout") from None
            except asyncio.LimitOverrunError:
                await self._reply(conn, "GET", _text(431, "request headers too large\n"), None)
                raise _Cut("bad_request") from None
            self._waiting.pop(conn, None)
            if not head:
                continue  # empty lines between requests
            first = False
            if not await self._request(conn, head[:-4]):
                return

    async def _request(self, conn: _Connection, head: bytes) -> bool:
        """Answers one request; False when the connection ends after it."""
        try:
            request, version = parse_head(head)
            if "transfer-encoding" in request.headers or int(request.headers.get("content-length", "0")) < 0:
                raise ValueError("request with a body")
        except ValueError as e:
            await self._reply(conn, "GET", _text(400, "bad request\n"), None)
            self._note("bad_request", "bad http request", err=str(e), peer=conn.peer)
            raise _Cut("bad_request") from None
        connection = request.headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        keep = keep and request.headers.get("content-length", "0") == "0"  # a body is never read: close after
        if self.limits.max_requests and self.in_flight >= self.limits.max_requests:
            self._note("max_requests", "too many http requests in flight, answering 503", peer=conn.peer,
                       max_requests=self.limits.max_requests)
            response = _text(503, f"Limit of concurrent requests reached ({self.limits.max_requests}), "
                                  "try again later.\n")
            await self._reply(conn, request.method, response, keep, version)
            return keep
        self.in_flight += 1
        conn.writer.transport.pause_reading()  # nothing closes the socket while a worker writes to it
        try:
            status, data, sent = await self._workers.run(self._answer, conn, request, keep, version)
            conn.writer.transport.resume_reading()
            await self._send(conn, status, data[sent:] if sent else data)
        finally:
            self.in_flight -= 1
        return keep

    def _answer(self, conn: _Connection, request: Request, keep: bool, version: str) -> tuple[int, bytes, int]:
        """In a worker: the app's response as bytes, and how many of them the kernel took at once. The worker
        offers them to the socket itself (plain TCP; never waiting): concurrent scrapes then write in parallel,
        not one after the other through the loop's thread."""
        try:
            response = self.app(request)
        except Exception as e:  # noqa: BLE001
            log.error("http request failed", extra={"path": request.path, "err": f"{type(e).__name__}: {e}"})
            response = _text(500, "internal server error\n")
        data = _payload(request.method, response, keep, version)
        sent = 0
        if self.tls is None:
            try:
                sent = conn.sock.send(data)  # non-blocking, as asyncio made it
            except OSError:  # BlockingIOError: the client's window is full; others: the transport finds out
                pass
        return response.status, data, sent

    async def _reply(self, conn: _Connection, method: str, response: Response, keep: bool | None,
                     version: str = "HTTP/1.1") -> None:
        await self._send(conn, response.status, _payload(method, response, keep, version))

    async def _send(self, conn: _Connection, status: int, data: bytes) -> None:
        conn.writer.write(data)
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                await conn.writer.drain()
        except TimeoutError:
            raise _Cut("write_timeout") from None
        self.codes[status] = self.codes.get(status, 0) + 1


def _payload(method: str, response: Response, keep: bool | None, version: str) -> bytes:
    """Status line, headers and (except for HEAD) body."""
    header = "close" if not keep else ("keep-alive" if version == "HTTP/1.0" else None)
    head = _head(response.status, response.headers, len(response.body), header)
    return head if method == "HEAD" else head + response.body
