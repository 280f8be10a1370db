"""What HTTP serves: a landing page at /, the latest snapshot at the telemetry path, 404 elsewhere."""

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from isal import isal_zlib
from prometheus_client.process_collector import ProcessCollector

from lxcwatch.export import exposition, landing, metrics, negotiation
from lxcwatch.export.basic_auth import BasicAuth
from lxcwatch.export.http_server import Request, Response
from lxcwatch.export.web_config import WebConfig

log = logging.getLogger("lxcwatch.http")

# The process collector reads three /proc files (~0.2 ms): at most once per this many seconds, so that concurrent
# scrapers do not multiply it (Prometheus scrapes every few seconds at most; each then gets values read for it).
PROCESS_EVERY = 1.0
GZIP_LEVEL = 1  # ISA-L's level 1: 825 KiB -> 120 KiB in 0.7 ms, where zlib's level 1 took 3.6 ms (docs/performance.md)
# Magic, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952, 2.3)
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass
class Rendered:
    """One snapshot in one format: the plain bytes, and once a gzip scrape asked for it, their gzip stream up to a
    sync flush (header and deflate blocks, ISA-L) and their CRC. A scrape appends its own live families as a last
    deflate block and the trailer: one gzip member (RFC 1952), compressed once per snapshot, whatever the number of
    scrapes."""

    key: tuple  # (snapshot seq, agent)
    taken: float  # the snapshot's monotonic time: the age served with these bytes
    body: bytes
    gzip_head: bytes = b""  # empty until first needed
    crc: int = 0

    def compress(self) -> None:
        if not self.gzip_head:
            self.crc = isal_zlib.crc32(self.body)  # before gzip_head: a scrape that sees the head reads no lock
            self.gzip_head = GZIP_HEADER + _deflate(self.body, isal_zlib.Z_SYNC_FLUSH)

    def serves(self, gzip: bool) -> bool:
        return bool(self.gzip_head) or not gzip

    def gzip(self, tail: bytes) -> list[bytes]:
        self.compress()
        trailer = struct.pack("<II", isal_zlib.crc32(tail, self.crc), (len(self.body) + len(tail)) & 0xFFFFFFFF)
        return [self.gzip_head, _deflate(tail, isal_zlib.Z_FINISH) + trailer]


def _deflate(data: bytes, flush: int) -> bytes:
    """Raw deflate blocks: after a sync flush they end on a byte boundary, so that more blocks may follow."""
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(flush)


class Exposition:
    """Renders the latest snapshot once per snapshot and format, and compresses it at most once; every other scrape
    is a cache hit. The process's own figures (prometheus_client's process collector, at most once a second) and
    `live` families are rendered (and compressed) at each scrape: the exporter metrics, which
    --web.disable-exporter-metrics leaves out. Where scrapes come at least as often as samples, `prepare` renders
    each new snapshot as soon as it is taken, and scrapes meanwhile serve the one before: none waits for it. A
    snapshot more than one sample older is never served for a newer one: scraped every 15 s, a scrape waits."""

    def __init__(self, sampler, agent: metrics.Agent):
        self.sampler = sampler
        self.agent = agent  # replaced whole by a reload
        self._cache: dict[str, Rendered] = {}
        self._writers: dict[str, exposition.Writer] = {}  # per content type: each keeps its last exposition's labels
        self._live_writers: dict[str, exposition.Writer] = {}  # the same for the families rendered at each scrape
        self._lock = threading.Lock()  # for rendering a snapshot: the writers keep state
        self._scrape_lock = threading.Lock()  # for the live writers and _served
        self.extra = lambda: []  # more families, rendered with each new snapshot
        self.live = lambda: []  # more families, rendered at each scrape
        self.exporter_metrics = True  # the process's and `live` families are served
        self._process = ProcessCollector(registry=None)
        self._process_read: tuple[float, list] = (-PROCESS_EVERY, [])  # (when, families)
        # per content type: (openmetrics, gzip asked last, last snapshot served, snapshots served in a row)
        self._served: dict[str, tuple[bool, bool, int, int]] = {}

    def render(self, accept: str, gzip: bool = False) -> tuple[list[bytes], str]:
        """The exposition in parts, to be written one after the other (with `gzip`: one gzip stream), and its
        content type. A scrape does not wait for a rendering under way (ahead, or for another scrape) when the
        snapshot just before is rendered: that body goes out with its own age, at most one sample older."""
        openmetrics, content_type = exposition.negotiate(accept)
        snap, verdict = self.sampler.current
        cached = self._cache.get(content_type)
        if cached is None or cached.key != (snap.seq, self.agent) or not cached.serves(gzip):
            older = cached if cached and cached.key[0] == snap.seq - 1 and cached.serves(gzip) else None
            if self._lock.acquire(blocking=older is None):
                try:
                    cached = self._rendered(content_type, openmetrics, snap, verdict, gzip)
                finally:
                    self._lock.release()
            else:
                cached = older
        own = [*self._process_families(), *self.live()] if self.exporter_metrics else []
        with self._scrape_lock:
            _, _, last, row = self._served.get(content_type, (openmetrics, gzip, 0, 0))
            seq = snap.seq  # asked for, if not served: scrapes at every sample keep the next one rendered ahead
            if seq >= last:  # a scrape that read `current` before another's did counts nothing back
                row = row if seq == last else row + 1 if seq == last + 1 else 1
                self._served[content_type] = openmetrics, gzip, seq, row
            live = self._live_writers.setdefault(content_type, exposition.Writer())
            now = live.render([metrics.sample_age(cached.taken, time.monotonic()), *own], openmetrics)
        return (cached.gzip(now) if gzip else [cached.body, now]), content_type

    def prepare(self, snap, verdict) -> None:
        """Sampler callback: in each format whose last two snapshots were both served (scrapes at least as often as
        samples), render and compress the new snapshot now. Scraped every 15 s, nothing is rendered ahead."""
        try:
            with self._lock:
                for content_type, (openmetrics, gzip, last, row) in list(self._served.items()):
                    if row >= 2 and last == snap.seq - 1:
                        self._rendered(content_type, openmetrics, snap, verdict, gzip)
        except Exception:  # noqa: BLE001  (the sampler goes on; the scrape renders it, or says what failed)
            log.exception("rendering ahead failed")

    def _rendered(self, content_type: str, openmetrics: bool, snap, verdict, gzip: bool) -> Rendered:
        """The snapshot's Rendered in this format (compressed if `gzip`), rendered now if it is not yet; the caller
        holds the lock. A new one is stored complete: meanwhile, scrapes serve the one before."""
        key = (snap.seq, self.agent)
        cached = self._cache.get(content_type)
        if not cached or cached.key != key:
            families = metrics.families(snap, key[1], self.sampler.overruns, verdict, self.extra())
            writer = self._writers.setdefault(content_type, exposition.Writer())
            cached = Rendered(key, snap.monotonic, writer.render(families, openmetrics, end=False))
        if gzip:
            cached.compress()
        self._cache[content_type] = cached
        return cached

    def _process_families(self) -> list[exposition.Family]:
        read_at, families = self._process_read
        if time.monotonic() - read_at >= PROCESS_EVERY:
            families = exposition.from_client(self._process.collect())
            self._process_read = time.monotonic(), families
        return families


def make_app(exposition: Exposition, telemetry_path: str) -> Callable[[Request], Response]:
    def app(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"method not allowed\n")
        if request.path == telemetry_path:
            gzip = negotiation.wants_gzip(request.headers.get("accept-encoding", ""))
            body, content_type = exposition.render(request.headers.get("accept", ""), gzip)
            headers = [("Content-Type", content_type)]
            if gzip:
                headers.append(("Content-Encoding", "gzip"))
            return Response(200, headers, body)
        if request.path == "/":
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], landing.page(exposition.agent, telemetry_path))
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
