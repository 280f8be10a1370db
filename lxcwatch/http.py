"""HTTP serving: a landing page at /, the latest snapshot at the telemetry path, 404 elsewhere."""

import gzip
import html
import socket
import ssl
import threading
import time
from socketserver import TCPServer, ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from lxcwatch import exposition, metrics
from lxcwatch.basic_auth import BasicAuth
from lxcwatch.errors import RuntimeFailure
from lxcwatch.web_config import WebConfig

HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take over the TLS handshake


class Exposition:
    """Renders the latest snapshot once per snapshot and format; every other scrape is a cache hit."""

    def __init__(self, sampler, agent: metrics.Agent):
        self.sampler = sampler
        self.agent = agent  # replaced whole by a reload
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self.extra = lambda: []  # more families, rendered with each new snapshot

    def render(self, accept: str) -> tuple[bytes, str]:
        openmetrics, content_type = exposition.negotiate(accept)
        snap, verdict = self.sampler.current
        agent = self.agent
        with self._lock:
            cached = self._cache.get(content_type)
            if cached and cached[0] == (snap.seq, agent):
                body = cached[1]
            else:
                body = exposition.render(metrics.families(snap, agent, self.sampler.overruns, verdict, self.extra()), openmetrics)
                self._cache[content_type] = ((snap.seq, agent), body)
        return exposition.append(body, [metrics.sample_age(snap, time.monotonic())], openmetrics), content_type


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


def make_app(exposition: Exposition, telemetry_path: str):
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"method not allowed\n"]
        if path == telemetry_path:
            body, content_type = exposition.render(environ.get("HTTP_ACCEPT", ""))
            headers = [("Content-Type", content_type)]
            if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
                body = gzip.compress(body, compresslevel=1)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing(exposition.agent, telemetry_path)]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def guard(app, web: WebConfig | None):
    """Basic auth (401 for any path) and the configured response headers in front of `app`."""
    if web is None or not (web.users or web.headers):
        return app
    auth = BasicAuth(web.users) if web.users else None

    def guarded(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, headers + list(web.headers), exc_info)

        if auth and not auth.check(environ.get("HTTP_AUTHORIZATION", "")):
            start("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="lxcwatch"'), ("Content-Type", "text/plain")])
            return [b"unauthorized\n"]
        return app(environ, start)

    return guarded


class _Handler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes are not news
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 overflows under 50 concurrent scrapers: SYN retries of 1-3 s
    tls: ssl.SSLContext | None = None

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        # Here, in the connection's own thread: a client slow to shake hands holds up nobody else.
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError included: plain HTTP, an unknown CA, no certificate, a timeout
            return
        try:
            conn.settimeout(None)
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can hang a host with no resolver.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "lxcwatch", self.server_address[1]
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self):
        # ":12243" listens on IPv6 and IPv4 alike, as node_exporter does.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        _Server.server_bind(self)


def parse_address(address: str) -> tuple[str, int]:
    """"host:port", ":port" (all addresses) or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {address!r}: want host:port or :port")
    return host.strip("[]"), int(port)


def bind(address: str, app, tls: ssl.SSLContext | None = None) -> WSGIServer:
    host, port = parse_address(address)
    if host == "":
        servers, hosts = (_Server6, _Server), ("::", "0.0.0.0")
    else:
        servers, hosts = ((_Server6 if ":" in host else _Server),), (host,)
    error = None
    for server, h in zip(servers, hosts):
        try:
            httpd = server((h, port), _Handler, bind_and_activate=True)
            httpd.set_app(app)
            httpd.tls = tls
            return httpd
        except OSError as e:
            error = e
            if e.errno not in (socket.EAI_FAMILY, 97):  # fall back to IPv4 only when IPv6 is unavailable
                break
    raise RuntimeFailure(f"listen tcp {address}: {error.strerror or error}")


def serve(servers: list[WSGIServer]) -> list[threading.Thread]:
    threads = [threading.Thread(target=s.serve_forever, name=f"http-{s.server_address[1]}", daemon=True) for s in servers]
    for t in threads:
        t.start()
    return threads
