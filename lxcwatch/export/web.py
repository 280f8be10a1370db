"""What HTTP serves: a landing page at /, the latest snapshot at the telemetry path, 404 elsewhere."""

import errno
import gzip
import html
import os
import socket
import threading
import time
from collections.abc import Callable

import systemd.daemon
from prometheus_client.process_collector import ProcessCollector

from lxcwatch.errors import RuntimeFailure
from lxcwatch.export import exposition, metrics, negotiation
from lxcwatch.export.basic_auth import BasicAuth
from lxcwatch.export.http_server import BACKLOG, Request, Response
from lxcwatch.export.web_config import WebConfig

# The process collector reads three /proc files (~0.2 ms): at most once per this many seconds, so that concurrent
# scrapers do not multiply it (Prometheus scrapes every few seconds at most; each then gets values read for it).
PROCESS_EVERY = 1.0


class Exposition:
    """Renders the latest snapshot once per snapshot and format; every other scrape is a cache hit. The process's
    own figures (prometheus_client's process collector, at most once a second) and `live` families are rendered at
    each scrape: the exporter metrics, which --web.disable-exporter-metrics leaves out."""

    def __init__(self, sampler, agent: metrics.Agent):
        self.sampler = sampler
        self.agent = agent  # replaced whole by a reload
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self.extra = lambda: []  # more families, rendered with each new snapshot
        self.live = lambda: []  # more families, rendered at each scrape
        self.exporter_metrics = True  # the process's and `live` families are served
        self._process = ProcessCollector(registry=None)
        self._process_read: tuple[float, list] = (-PROCESS_EVERY, [])  # (when, families)

    def render(self, accept: str) -> tuple[list[bytes], str]:
        """The exposition in parts, to be written one after the other, and its content type."""
        openmetrics, content_type = exposition.negotiate(accept)
        snap, verdict = self.sampler.current
        own = [*self._process_families(), *self.live()] if self.exporter_metrics else []
        now = exposition.render([metrics.sample_age(snap, time.monotonic()), *own], openmetrics)
        agent = self.agent
        with self._lock:
            cached = self._cache.get(content_type)
            if not cached or cached[0] != (snap.seq, agent):
                families = metrics.families(snap, agent, self.sampler.overruns, verdict, self.extra())
                cached = (snap.seq, agent), exposition.render(families, openmetrics, end=False)
                self._cache[content_type] = cached
        return [cached[1], now], content_type

    def _process_families(self) -> list[exposition.Family]:
        read_at, families = self._process_read
        if time.monotonic() - read_at >= PROCESS_EVERY:
            families = exposition.from_client(self._process.collect())
            self._process_read = time.monotonic(), families
        return families


LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lxcwatch</title></head>
<body><h1>lxcwatch</h1>
<p>Receive-path monitor for LXC hosts: hard interrupts against NAPI polling, per NIC.</p>
<p>Version {version}; replica {replica} of group {group}.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


def landing(agent: metrics.Agent, telemetry_path: str) -> bytes:
    return LANDING.format(version=html.escape(agent.version), replica=html.escape(agent.replica),
                          group=html.escape(agent.replica_group or "(none)"), path=html.escape(telemetry_path)).encode()


def make_app(exposition: Exposition, telemetry_path: str) -> Callable[[Request], Response]:
    def app(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"method not allowed\n")
        if request.path == telemetry_path:
            body, content_type = exposition.render(request.headers.get("accept", ""))
            headers = [("Content-Type", content_type)]
            if negotiation.wants_gzip(request.headers.get("accept-encoding", "")):
                body = gzip.compress(b"".join(body), compresslevel=1)
                headers.append(("Content-Encoding", "gzip"))
            return Response(200, headers, body)
        if request.path == "/":
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], landing(exposition.agent, telemetry_path))
        return Response(404, [("Content-Type", "text/plain")], b"not found\n")

    return app


def guard(app: Callable[[Request], Response], web: Callable[[], WebConfig] | None) -> Callable[[Request], Response]:
    """Basic auth (401 for any path) and the response headers of the web config in force (web_config.Watcher) in
    front of `app`."""
    if web is None:
        return app
    checker: list = [(None, None)]  # (config, its BasicAuth): built again (one bcrypt) only when the config changes

    def guarded(request: Request) -> Response:
        config = web()
        known, auth = checker[0]
        if known is not config:
            auth = BasicAuth(config.users) if config.users else None
            checker[0] = config, auth
        if auth and not auth.check(request.headers.get("authorization", "")):
            response = Response(401, [("WWW-Authenticate", 'Basic realm="lxcwatch"'), ("Content-Type", "text/plain")],
                                b"unauthorized\n")
        else:
            response = app(request)
        response.headers.extend(config.headers)
        return response

    return guarded


def systemd_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed to this process ($LISTEN_PID, $LISTEN_FDS; sd_listen_fds(3))."""
    fds = systemd.daemon.listen_fds()  # and unsets the variables, which a child must not take for its own
    if not fds:
        raise RuntimeFailure("--web.systemd-socket: systemd passed no socket (no $LISTEN_FDS for this process); "
                             "start lxcwatch.socket, or listen with --web.listen-address")
    sockets = []
    for fd in fds:
        try:
            s = socket.socket(fileno=fd)
            listening = s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM and \
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = False
        if not listening:
            raise RuntimeFailure(f"--web.systemd-socket: descriptor {fd} from systemd is not a listening TCP socket "
                                 "(want ListenStream=PORT or ADDRESS:PORT in the .socket unit)")
        sockets.append(s)
    return sockets


def address_of(s: socket.socket) -> str:
    """Where `s` listens, as --web.listen-address spells it."""
    host, port = s.getsockname()[:2]
    return f"[{host}]:{port}" if s.family == socket.AF_INET6 else f"{host}:{port}"


def parse_address(address: str) -> tuple[str, int]:
    """"host:port", ":port" (all addresses) or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {address!r}: want host:port or :port")
    return host.strip("[]"), int(port)


def bind(address: str) -> socket.socket:
    """A listening socket; ":port" listens on IPv6 and IPv4 alike, as node_exporter does."""
    host, port = parse_address(address)
    try:
        if host == "":
            if socket.has_dualstack_ipv6():
                try:
                    return socket.create_server(("::", port), family=socket.AF_INET6, backlog=BACKLOG,
                                                dualstack_ipv6=True)
                except OSError as e:
                    if e.errno not in (socket.EAI_FAMILY, errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        raise
            return socket.create_server(("0.0.0.0", port), backlog=BACKLOG)  # IPv6 is unavailable
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=BACKLOG)
    except OSError as e:
        raise RuntimeFailure(f"listen tcp {address}: {os.strerror(e.errno) if e.errno else e}") from None
