"""The verdict as metric families and as the `status` view: every branch of the rendering, heavy, calm and unknown."""

import pytest

from lxcwatch.export import status, verdict_metrics
from lxcwatch.core.classifier import HOST_REASONS, REASONS, Mode, NicVerdict, Verdict
from lxcwatch.core.rates import NicRates
from lxcwatch.collectors import build
from lxcwatch.core.snapshot import CollectorResult, Snapshot

HEAVY = Mode(True, "full_polls", 0, 0.0, 1000.0, 3)
CALM = Mode(False, "none", 0, 0.0, None, 2)


def rates(device="eth0", packets=50_000.0, irqs=100.0, polls=None, full=None) -> NicRates:
    return NicRates(device, packets, irqs, packets / irqs if irqs else None, 300.0, 20.0, (0,), 1, polls, full)


def nic(mode=HEAVY, missing=(), **kw) -> NicVerdict:
    r = rates(**kw)
    return NicVerdict(r.device, mode, "unknown" if missing else mode.reason, r, r.net_rx / r.irqs if r.irqs else None,
                      0.0, missing)


def samples(v: Verdict) -> dict[tuple, float]:
    """(metric name, labels...) -> value of every sample the verdict renders."""
    out = {}
    for f in verdict_metrics.render(v):
        name = f.name + ("_total" if f.type == "counter" else "")
        for labels, value in f.samples:
            out[(name, *labels)] = value
    return out


def test_a_known_heavy_nic_and_host():
    v = Verdict({"eth0": nic(polls=1000.0, full=950.0)}, Mode(), Mode(True, "nic", 0, 0.0, 990.0, 1), "nic")
    got = samples(v)
    assert got[("lxcwatch_nic_napi_heavy", "eth0")] == 1
    assert got[("lxcwatch_nic_napi_verdict_known", "eth0")] == 1
    assert got[("lxcwatch_nic_packets_per_interrupt", "eth0")] == 500
    assert got[("lxcwatch_nic_softirqs_per_interrupt", "eth0")] == 3
    assert got[("lxcwatch_nic_full_poll_ratio", "eth0")] == 0.95
    assert got[("lxcwatch_nic_napi_heavy_since_timestamp_seconds", "eth0")] == 1000.0
    assert got[("lxcwatch_nic_mode_changes_total", "eth0")] == 3
    assert {r: got[("lxcwatch_nic_napi_reason", "eth0", r)] for r in REASONS} == {r: int(r == "full_polls") for r in REASONS}
    assert got[("lxcwatch_host_napi_heavy",)] == 1 and got[("lxcwatch_host_napi_verdict_known",)] == 1
    assert {r: got[("lxcwatch_host_napi_reason", r)] for r in HOST_REASONS} == {"none": 0, "nic": 1, "softnet_pressure": 0}
    assert got[("lxcwatch_host_mode_changes_total",)] == 1
    assert got[("lxcwatch_host_napi_heavy_since_timestamp_seconds",)] == 990.0


def test_the_host_series_is_the_host_verdict_not_the_pressure_mode():
    pressure_only = Verdict({}, Mode(True, "softnet_pressure", 0, 0.0, 5.0, 1), Mode(), "none")
    assert samples(pressure_only)[("lxcwatch_host_napi_heavy",)] == 0
    nic_only = Verdict({"eth0": nic()}, Mode(), Mode(True, "nic", 0, 0.0, 5.0, 1), "nic")
    assert samples(nic_only)[("lxcwatch_host_napi_heavy",)] == 1


def test_a_calm_nic_has_no_since_and_no_ratio_without_irqs_or_polls():
    got = samples(Verdict({"eth0": nic(CALM, irqs=0.0)}))
    assert got[("lxcwatch_nic_napi_heavy", "eth0")] == 0 and got[("lxcwatch_nic_mode_changes_total", "eth0")] == 2
    assert got[("lxcwatch_nic_napi_reason", "eth0", "none")] == 1
    for name in ("lxcwatch_nic_packets_per_interrupt", "lxcwatch_nic_softirqs_per_interrupt",
                 "lxcwatch_nic_full_poll_ratio", "lxcwatch_nic_napi_heavy_since_timestamp_seconds"):
        assert (name, "eth0") not in got, name
    assert got[("lxcwatch_host_napi_heavy",)] == 0 and ("lxcwatch_host_napi_heavy_since_timestamp_seconds",) not in got


@pytest.mark.parametrize("irqs", [0.0, 100.0])
def test_an_unknown_nic_shows_only_that_it_is_unknown(irqs):
    got = samples(Verdict({"eth0": nic(HEAVY, ("netdev",), irqs=irqs, polls=10.0, full=10.0), "eth1": nic(CALM, device="eth1")}))
    assert got[("lxcwatch_nic_napi_verdict_known", "eth0")] == 0
    assert [k for k in got if "eth0" in k] == [("lxcwatch_nic_napi_verdict_known", "eth0")]
    assert got[("lxcwatch_nic_napi_verdict_known", "eth1")] == 1 and got[("lxcwatch_nic_napi_heavy", "eth1")] == 0


def test_an_unknown_host_shows_only_that_it_is_unknown():
    got = samples(Verdict({}, Mode(), Mode(True, "nic", 0, 0.0, 5.0, 1), "unknown", ("softnet",)))
    assert {k: v for k, v in got.items() if k[0].startswith("lxcwatch_host")} == {("lxcwatch_host_napi_verdict_known",): 0}


def snapshot(failed=()) -> Snapshot:
    return build(None, 2, 1001.0, 2.0, {}, {n: CollectorResult(n not in failed, 0.0, "broken" if n in failed else "")
                                     for n in ("interrupts", "netdev", "softnet")})


def test_status_names_the_modes_as_the_agent_does_and_says_what_failed():
    before = build(None, 1, 1000.0, 1.0, {}, {})
    v = Verdict({"eth0": nic(missing=("softnet",))}, Mode(), Mode(), "unknown", ("softnet",))
    data = status.report(before, snapshot(("softnet",)), v)
    assert data["host"] == {"mode": "unknown", "reason": "softnet failed"}
    assert status._mode("full_polls") == "napi_heavy" and status._mode("none") == "interrupt"
    text = status.to_text(data)
    assert text.splitlines()[0] == "Rates over 1.0s; host: unknown (softnet failed)"
    assert "warning: collector softnet failed: broken" in text
