"""Rendering a snapshot into the exposition: names, labels, values, and isolation of failures."""

import dataclasses
import platform
import re

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from lxcwatch.export import exposition, metrics
from lxcwatch.kernel.link import Driver, Link
from lxcwatch.kernel.napi import Napi, NapiTuning
from lxcwatch import collectors
from lxcwatch.collectors import build
from lxcwatch.core.snapshot import CollectorResult
from lxcwatch.core.family import Columns
from tests.unit.test_snapshot_rates import OK, netdev, reading

AGENT = metrics.Agent("9.9.9", "pair-1", "host-a")


def expose(snapshot, overruns=0) -> str:
    return exposition.render(metrics.families(snapshot, AGENT, overruns), openmetrics=False).decode()


def sample(extra=None, results=None):
    readings = reading(0, 123, (40, 2), 5000, 77)
    readings.update(extra or {})
    results = results or {name: OK for name in readings}
    return build(None, 3, 1700000000.5, 10.0, readings, results)


def test_core_families_and_values():
    text = expose(sample())
    for line in [
        'lxcwatch_softnet_processed_total{cpu="0"} 123',
        'lxcwatch_softnet_times_squeezed_total{cpu="0"} 0',
        'lxcwatch_softnet_backlog_packets{cpu="1"} 0',
        'lxcwatch_softirqs_total{cpu="0",vector="NET_RX"} 77',
        'lxcwatch_nic_interrupts_total{device="eth0",irq="38",vector="rx"} 42',
        'lxcwatch_nic_interrupts_total{device="eth0",irq="37",vector="control"} 1',
        'lxcwatch_link_receive_packets_total{device="eth0"} 5000',
        f'lxcwatch_build_info{{version="9.9.9",revision="unknown",pythonversion="{platform.python_version()}"}} 1',
        'lxcwatch_replica_info{replica_group="pair-1",replica="host-a"} 1',
        'lxcwatch_scrape_collector_success{collector="softnet"} 1',
        "lxcwatch_last_sample_timestamp_seconds 1700000000.5",
        "lxcwatch_samples_total 3",
    ]:
        assert line in text.splitlines(), line



def test_a_host_in_no_replica_group_exports_no_membership():
    ungrouped = metrics.Agent("9.9.9", "", "host-a")
    text = exposition.render(metrics.families(sample(), ungrouped), openmetrics=False).decode()
    assert "lxcwatch_replica_info" not in text
    assert 'lxcwatch_build_info{version="9.9.9",' in text


def test_links_and_napi():
    bridge = Link("br0", 5, "bridge", "", "up", 0x1003, 0, Driver("bridge", "2.3", "N/A", "N/A"))
    port = Link("eth0", 2, "physical", "br0", "up", 0x1103, 1, Driver("tg3", "3.119", "5719-v1.38", "0000:02:00.0"))
    napi = Napi({"eth0": NapiTuning(True, 2, 200000)}, {"netdev_budget": 300, "netdev_budget_usecs": 2000})
    text = expose(sample({"links": {"br0": bridge, "eth0": port}, "napi": napi})).splitlines()
    assert 'lxcwatch_link_promiscuous{device="eth0"} 1' in text
    assert 'lxcwatch_link_promiscuous{device="br0"} 0' in text
    assert 'lxcwatch_link_promiscuity{device="eth0"} 1' in text
    assert 'lxcwatch_bridge_ports{bridge="br0"} 1' in text
    assert ('lxcwatch_link_info{device="eth0",kind="physical",master="br0",driver="tg3",'
            'driver_version="3.119",firmware_version="5719-v1.38",bus_info="0000:02:00.0"} 1') in text
    assert 'lxcwatch_link_napi_threaded{device="eth0"} 1' in text
    assert 'lxcwatch_link_gro_flush_timeout_seconds{device="eth0"} 0.0002' in text
    assert "lxcwatch_net_core_netdev_budget_packets 300" in text
    assert "lxcwatch_net_core_netdev_budget_seconds 0.002" in text


def test_links_render_again_when_a_link_or_the_view_changes():
    """The links collector keeps its last rendering for an equal link table (collectors/links.py): a flag that flips,
    a link that comes, and a device filter must each show at once."""
    links = {"eth0": Link("eth0", 2, "physical", "", "up", 0x1003, 0),
             "veth1": Link("veth1", 9, "veth", "", "up", 0x1003, 0)}
    render = collectors.ALL["links"].render
    promiscuous = lambda snap, view=collectors.View(): {
        s: v for f in render(snap, view) if f.name == "lxcwatch_link_promiscuous" for s, v in f.samples}
    assert promiscuous(sample({"links": links})) == {("eth0",): 0, ("veth1",): 0}
    assert promiscuous(sample({"links": dict(links)})) == {("eth0",): 0, ("veth1",): 0}
    flipped = {**links, "veth1": dataclasses.replace(links["veth1"], flags=0x1103)}
    assert promiscuous(sample({"links": flipped})) == {("eth0",): 0, ("veth1",): 1}
    grown = {**flipped, "veth0": Link("veth0", 8, "veth", "", "up", 0x1103, 1)}
    assert promiscuous(sample({"links": grown})) == {("eth0",): 0, ("veth0",): 1, ("veth1",): 1}
    only_eth = collectors.View({"links": collectors.DeviceFilter(include=re.compile("^eth"))})
    assert promiscuous(sample({"links": grown}), only_eth) == {("eth0",): 0}
    assert [s for s, _ in next(f for f in render(sample({"links": grown}), collectors.View())
                               if f.name == "lxcwatch_link_up").samples] == [("eth0",), ("veth0",), ("veth1",)]


def test_link_counters_render_again_when_the_links_or_the_view_change():
    """The netdev collector keeps its sorted, filtered device list while the links are the same
    (collectors/netdev.py): a link that comes or goes, and a device filter, must each show at once."""
    render = collectors.ALL["netdev"].render
    received = lambda snap, view=collectors.View(): {
        s: v for f in render(snap, view) if f.name == "lxcwatch_link_receive_packets" for s, v in f.samples}
    two = {"veth1": netdev(7), "eth0": netdev(5)}
    assert received(sample({"netdev": two})) == {("eth0",): 5, ("veth1",): 7}
    assert received(sample({"netdev": {**two, "eth0": netdev(6)}})) == {("eth0",): 6, ("veth1",): 7}
    grown = {**two, "veth0": netdev(1)}
    assert received(sample({"netdev": grown})) == {("eth0",): 5, ("veth0",): 1, ("veth1",): 7}
    assert [s for s, _ in next(render(sample({"netdev": grown}), collectors.View())).samples] == [
        ("eth0",), ("veth0",), ("veth1",)]  # sorted by name
    only_eth = collectors.View({"netdev": collectors.DeviceFilter(include=re.compile("^eth"))})
    assert received(sample({"netdev": grown}), only_eth) == {("eth0",): 5}
    assert received(sample({"netdev": {"veth0": netdev(1)}})) == {("veth0",): 1}


def test_promiscuity_count_is_absent_when_unknown():
    tree_link = Link("veth1", 9, "veth", "", "up", 0x1103, None)
    text = expose(sample({"links": {"veth1": tree_link}}))
    assert "lxcwatch_link_promiscuity{" not in text
    assert 'lxcwatch_link_promiscuous{device="veth1"} 1' in text


def test_failed_collector_reports_zero_and_the_rest_is_served():
    readings = reading(0, 1, (0, 0), 9, 0)
    del readings["softnet"]
    results = {name: OK for name in readings} | {"softnet": CollectorResult(False, 0.002, "boom")}
    text = expose(build(None, 1, 1.0, 1.0, readings, results))
    assert 'lxcwatch_scrape_collector_success{collector="softnet"} 0' in text
    assert "lxcwatch_softnet_processed_total" not in text
    assert 'lxcwatch_link_receive_packets_total{device="eth0"} 9' in text


def test_a_renderer_bug_fails_only_its_collector(monkeypatch):
    def broken(_snapshot, _view):
        raise RuntimeError("bug")
        yield

    monkeypatch.setitem(collectors.ALL, "netdev", dataclasses.replace(collectors.ALL["netdev"], render=broken))
    text = expose(sample())
    assert 'lxcwatch_scrape_collector_success{collector="netdev"} 0' in text
    assert 'lxcwatch_softnet_processed_total{cpu="0"} 123' in text


def test_both_formats_parse_with_the_reference_parsers():
    families = metrics.families(sample(), AGENT)
    plain = {f.name: f for f in text_string_to_metric_families(exposition.render(families, False).decode())}
    om = {f.name: f for f in openmetrics_families(exposition.render(families, True).decode())}
    for parsed in (plain, om):
        processed = parsed["lxcwatch_softnet_processed"]
        assert processed.type == "counter"
        assert [(s.labels, s.value) for s in processed.samples if s.name.endswith("_total")] == [
            ({"cpu": "0"}, 123), ({"cpu": "1"}, 7)]


def test_label_values_are_escaped():
    family = exposition.Family("x", "gauge", "h", ("device",))
    family.add(['we"ird\\name\n'], 1)
    # the label value is we"ird\\name<newline>: a kernel backslash is spelt \\ (reversible), then escaped
    assert exposition.render([family], False).decode().splitlines()[-1] == 'x{device="we\\"ird\\\\\\\\name\\n"} 1'


def test_columns_read_as_the_pairs_they_stand_for():
    columns = Columns([("eth0",), ("veth1",)], [5, 7])
    assert columns == [(("eth0",), 5), (("veth1",), 7)] and [(("eth0",), 5), (("veth1",), 7)] == columns
    assert columns != Columns([("eth0",), ("veth1",)], [5, 8]) and len(columns) == 2 and columns[1] == (("veth1",), 7)
    with pytest.raises(ValueError, match="2 label sets for 1 values"):
        Columns([("eth0",), ("veth1",)], [5])


def test_a_column_of_counters_is_written_line_by_line_with_percent_signs_kept():
    writer = exposition.Writer()
    rx = exposition.Family("x", "counter", "h", ("device",), Columns([("a%d",), ("b%%s",)], [2**64 - 1, 0]))
    lines = ['x_total{device="a%d"} 18446744073709551615', 'x_total{device="b%%s"} 0']
    assert writer.render([rx], False).decode().splitlines()[2:] == lines
    rx.samples = Columns(rx.samples.keys, [1, 2])  # the same series, new values: the kept format
    assert writer.render([rx], False).decode().splitlines()[2:] == ['x_total{device="a%d"} 1', 'x_total{device="b%%s"} 2']
    rx.samples = Columns(rx.samples.keys, [1, 2.5])  # not all ints: no "%d", which would write 2
    assert writer.render([rx], False).decode().splitlines()[2:] == ['x_total{device="a%d"} 1', 'x_total{device="b%%s"} 2.5']
    rx.samples = [(("b%%s",), 3)]  # a list again, one series gone
    assert writer.render([rx], False).decode().splitlines()[2:] == ['x_total{device="b%%s"} 3']


@pytest.mark.parametrize("raw, label", [
    (b"eth0", "eth0"),
    ("v\u00e90".encode(), "v\u00e90"),  # valid UTF-8 (Linux allows it in a name) is kept byte for byte
    (b"v\xe90", "v\\xe90"),  # a byte that is not UTF-8: \xNN
    (b"a\\xe9", "a\\\\xe9"),  # the literal text a\xe9 differs from the byte: its backslash is doubled
])
def test_label_spelling_of_kernel_bytes_is_reversible(raw, label):
    name = raw.decode("utf-8", "surrogateescape")  # how fsroot, os.listdir and netlink decode kernel bytes
    assert exposition.label_value(name) == label
    unspelt = re.sub(rb"\\(\\|x([0-9a-f]{2}))", lambda m: bytes.fromhex(m[2].decode()) if m[2] else b"\\", label.encode())
    assert unspelt == raw


def test_openmetrics_encoding_ends_with_eof():
    om = exposition.render(metrics.families(sample(), AGENT), openmetrics=True).decode()
    assert om.endswith("# EOF\n")
    assert "# TYPE lxcwatch_softnet_processed counter" in om.splitlines()
    assert 'lxcwatch_softnet_processed_total{cpu="0"} 123' in om.splitlines()
