"""What a scrape reuses from the one before: the gzip stream of a snapshot is made once and ended per scrape (one
gzip member, whose text is the plain scrape's), and the label text of each series is kept from one exposition to
the next only for the series still there."""

import gzip
import time
import zlib

import pytest

from bench import synthetic_host
from lxcwatch.collectors import ALL as COLLECTORS
from lxcwatch.core import family
from lxcwatch.core.family import Family
from lxcwatch.export import exposition, metrics
from lxcwatch.export import web as http
from lxcwatch.export.http_server import Request
from lxcwatch.sampler import Sampler
from lxcwatch.sources.host import Sources


PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


@pytest.fixture
def app(tmp_path):
    synthetic_host.build(str(tmp_path / "host"), cpus=4, nics=2, queues=2, veths=6)
    sources = Sources.open(str(tmp_path / "host" / "proc"), str(tmp_path / "host" / "sys"), (str(tmp_path / "no-lxc"),))
    sampler = Sampler(sources, list(COLLECTORS), 1.0)
    sampler.sample()
    exp = http.Exposition(sampler, metrics.Agent("1.0", "", "a"))
    yield sampler, exp, http.make_app(exp, "/metrics")
    sources.close()


def scrape(app, accept: str, gzipped: bool):
    headers = {"accept": accept, **({"accept-encoding": "gzip"} if gzipped else {})}
    response = app(Request("GET", "/metrics", headers))
    body = b"".join(response.body) if isinstance(response.body, list) else response.body
    return dict(response.headers), body


def without_live(text: str) -> list[str]:
    """The snapshot's part: the families rendered at each scrape (sample age, process, HTTP) differ between two."""
    return text.split("# HELP lxcwatch_last_sample_age_seconds")[0].splitlines()


@pytest.mark.parametrize("accept", [PROMETHEUS_ACCEPT, "text/plain"])
def test_a_gzip_scrape_is_one_gzip_member_of_the_plain_scrape(app, accept):
    _, _, serve = app
    headers, body = scrape(serve, accept, True)
    assert headers["Content-Encoding"] == "gzip"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = inflate.decompress(body).decode()
    assert inflate.eof and inflate.unused_data == b""  # one member, ended, nothing after it
    plain = scrape(serve, accept, False)[1].decode()
    assert without_live(text) == without_live(plain)
    assert text.endswith("# EOF\n") == (accept == PROMETHEUS_ACCEPT)
    assert "lxcwatch_link_info{" in text and "process_cpu_seconds_total" in text


def test_the_snapshot_is_compressed_once_and_again_after_a_new_sample(app):
    sampler, exp, serve = app
    first = exp.render(PROMETHEUS_ACCEPT, gzip=True)[0]
    second = exp.render(PROMETHEUS_ACCEPT, gzip=True)[0]
    assert first[0] is second[0]  # the same compressed bytes, not compressed again
    sampler.sample()
    third = exp.render(PROMETHEUS_ACCEPT, gzip=True)[0]
    assert third[0] is not first[0]
    samples = [line for line in gzip.decompress(b"".join(third)).decode().splitlines()
               if line.startswith("lxcwatch_samples_total")]
    assert samples == ["lxcwatch_samples_total 2"]


def families(devices: list[str], value: float) -> list[Family]:
    up = family.gauge("link_up", "Up.", ["device"])
    info = family.gauge("link_info", "Info.", ["device", "kind"])
    rx = family.counter("link_receive_bytes", "Bytes.", ["device"])
    for d in devices:
        up.add([d], 1)
        info.add([d, 'we"ird\\kind\n'], 1)
        rx.add([d], value)
    plain = family.gauge("samples", "No labels.")
    plain.add([], value)
    return [up, info, rx, plain]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_writer_renders_what_a_fresh_one_does_after_series_change(openmetrics):
    writer = exposition.Writer()
    steps = [
        (["veth1", "veth2", "eth0"], 1),
        (["veth1", "veth2", "eth0"], 2.5),  # values only
        (["vethR", "veth2", "eth0", "br\udcff0"], 3),  # renamed, added (a non-UTF-8 name), one removed
        (["eth0"], 4),
    ]
    for devices, value in steps:
        assert writer.render(families(devices, value), openmetrics) == exposition.render(families(devices, value), openmetrics)
    kept = {name: sorted(series.keys) for name, series in writer._prefixes.items()}
    assert kept == {"lxcwatch_link_up": [("eth0",)], "lxcwatch_link_info": [("eth0", 'we"ird\\kind\n')],
                    "lxcwatch_link_receive_bytes_total": [("eth0",)]}  # the last exposition's series only


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_family_whose_samples_did_not_move_is_not_written_again(openmetrics):
    writer = exposition.Writer()
    first = families(["veth1", "eth0"], 1)
    writer.render(first, openmetrics)
    written = writer._lines["lxcwatch_link_up"]
    again = families(["veth1", "eth0"], 1.0)  # equal values: the same text
    assert writer.render(again, openmetrics) == exposition.render(again, openmetrics)
    assert writer._lines["lxcwatch_link_up"] is written  # taken as it was, not written again
    again[2].samples.append((("eth1",), 7))  # a family's list changed in place after it was written
    assert b'lxcwatch_link_receive_bytes_total{device="eth1"} 7' in writer.render(again, openmetrics)


def test_a_new_snapshot_is_rendered_ahead_only_where_every_snapshot_is_scraped(app):
    sampler, exp, _ = app
    sampler.on_sample.append(exp.prepare)
    exp.render(PROMETHEUS_ACCEPT, gzip=True)
    sampler.sample()  # one snapshot served so far: a scraper every 15 s looks like this, nothing is rendered ahead
    assert exp._cache[exposition.OPENMETRICS].key[0] == 1
    exp.render(PROMETHEUS_ACCEPT, gzip=True)  # the second snapshot in a row served
    sampler.sample()
    ahead = exp._cache[exposition.OPENMETRICS]
    assert ahead.key[0] == 3 and ahead.gzip_head  # rendered and compressed before any scrape asked
    parts = exp.render(PROMETHEUS_ACCEPT, gzip=True)[0]
    assert parts[0] is ahead.gzip_head
    assert "lxcwatch_samples_total 3" in gzip.decompress(b"".join(parts)).decode()
    assert exposition.TEXT not in exp._cache  # a format nobody asked for is not rendered


def value_of(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_scrape_during_a_rendering_serves_the_snapshot_before_with_its_own_age(app, gzipped):
    """Under 50 scrapers, all of them waited while the sampler rendered a new snapshot ahead (~9 ms on the bench
    tree). Now they get the snapshot before, and the age of that one: never a body older than its age says."""
    sampler, exp, serve = app
    now = time.monotonic()
    sampler.sample(at=(time.time() - 100, now - 100))
    scrape(serve, PROMETHEUS_ACCEPT, gzipped)  # snapshot 2, stamped 100 s ago, rendered
    sampler.sample(at=(time.time(), now))
    with exp._lock:  # snapshot 3 is being rendered (ahead, or for another scrape)
        body = scrape(serve, PROMETHEUS_ACCEPT, gzipped)[1]
    text = (gzip.decompress(body) if gzipped else body).decode()
    assert value_of(text, "lxcwatch_samples_total") == 2
    assert value_of(text, "lxcwatch_last_sample_age_seconds") >= 100
    assert exp._served[exposition.OPENMETRICS][2] == 3  # counted as asked: the sample after 3 is rendered ahead
    text = scrape(serve, PROMETHEUS_ACCEPT, False)[1].decode()  # the rendering done: the new one
    assert value_of(text, "lxcwatch_samples_total") == 3
    assert value_of(text, "lxcwatch_last_sample_age_seconds") < 100


class HeldLock:
    """The rendering lock as another thread holds it: a try fails; a wait is recorded and then succeeds."""

    def __init__(self):
        self.waited = 0

    def acquire(self, blocking=True):
        self.waited += blocking
        return blocking

    def release(self):
        pass


def test_a_scrape_waits_rather_than_serve_a_snapshot_two_samples_old(app):
    """Scraped every 15 s, the cached snapshot is 15 samples old: a body that stale would be stored at the scrape's
    time, so the scrape waits for the rendering instead."""
    sampler, exp, serve = app
    scrape(serve, PROMETHEUS_ACCEPT, False)  # snapshot 1 rendered
    exp._lock = HeldLock()
    sampler.sample()
    sampler.sample()
    text = scrape(serve, PROMETHEUS_ACCEPT, False)[1].decode()
    assert exp._lock.waited == 1
    assert value_of(text, "lxcwatch_samples_total") == 3
