"""The alerting lab, end to end on loopback: two lxcwatch agents per replica group on replayed traces, Debian's
Prometheus with the shipped rules, Debian's Alertmanager with the shipped routing, a webhook for the pager.

Three replica groups run side by side in one lab (one Prometheus, one Alertmanager), so the module takes as long
as its longest scenario (~3 minutes), not the sum:
- `kill`: both replicas quiet; one agent is killed -> the redundancy alert (and AgentDown), no page;
- `solo`: replica a slides into polling, b stays quiet -> one warning (a's), no page;
- `pair`: both replicas go heavy -> exactly one critical page for the group, resolved after the traffic stops.

Scrape and rule evaluation run every 1 s instead of 15 s (tests/lab.py); every `for`, group_wait and
group_interval is the shipped one. The warnings have `for: 5m`, longer than the module may take, so they are
checked pending in Prometheus, not at the webhook. The onset-to-page figure for the shipped defaults is
derived from the measured one in docs/detection.md ("Onset to page in the lab").
"""

import time

import lab
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(lab.unavailable()), reason=lab.unavailable() or "-")]

SECONDS = 150  # trace length; the traces end quiet, so every episode ends inside them
PAGE = "LxcwatchReplicasNapiHeavy"
LEAVE = 10  # the agent's leave_samples at 1 s samples
GROUP_INTERVAL = 60  # the shipped critical route's group_interval: a resolved notification waits up to this long


@pytest.fixture(scope="module")
def the_lab():
    replicas = [
        lab.Replica("kill", "a", "interrupt_driven", 2, SECONDS),
        lab.Replica("kill", "b", "interrupt_driven", 3, SECONDS),
        lab.Replica("solo", "a", "slide_into_polling", 3, SECONDS),
        lab.Replica("solo", "b", "interrupt_driven", 1, SECONDS),
        lab.Replica("pair", "a", "both_nics_heavy", 1, SECONDS),
        lab.Replica("pair", "b", "both_nics_heavy", 3, SECONDS),
    ]
    the_lab = lab.Lab(replicas)
    yield the_lab
    the_lab.close()


def remaining(deadline_wall: float, floor: float = 5.0) -> float:
    return max(floor, deadline_wall - time.time())


def test_killed_agent_raises_the_redundancy_alert(the_lab):
    prom = the_lab.prometheus
    lab.wait_until(lambda: prom.query('replica_group:lxcwatch_replicas_up:count{replica_group="kill"} == 2')
                   and prom.query('replica_group:lxcwatch_replicas_expected:count{replica_group="kill"} == 2'),
                   "Prometheus to know both replicas of `kill`", 30, diagnose=the_lab.diagnose)
    victim = the_lab.replica("kill", "b")
    victim.agent.proc.kill()
    victim.agent.proc.wait(timeout=10)

    degraded = lab.wait_until(lambda: the_lab.observer.matching(alertname="LxcwatchReplicaGroupDegraded",
                                                                replica_group="kill"),
                              "LxcwatchReplicaGroupDegraded for `kill`", 30, diagnose=the_lab.diagnose)
    (labels, states), = degraded.items()
    assert dict(labels) == {"alertname": "LxcwatchReplicaGroupDegraded", "replica_group": "kill",
                            "severity": "warning"}
    assert "pending" in states  # `for: 5m`: it fires 5 minutes later, after this module
    down = lab.wait_until(lambda: the_lab.observer.matching(alertname="LxcwatchAgentDown", replica_group="kill"),
                          "LxcwatchAgentDown for `kill`", 30, diagnose=the_lab.diagnose)
    assert [dict(k)["replica"] for k in down] == ["b"]
    assert dict(next(iter(down)))["instance"] == victim.target
    assert not the_lab.observer.matching(alertname="LxcwatchReplicaGroupDown")
    assert not the_lab.webhook.received("pager", replica_group="kill")


def test_one_heavy_replica_warns_and_does_not_page(the_lab):
    heavy = the_lab.replica("solo", "a")
    first, last = heavy.heavy_span()
    assert not the_lab.replica("solo", "b").heavy
    onset = heavy.started + first
    warned = lab.wait_until(lambda: the_lab.observer.matching(alertname="LxcwatchReplicaNapiHeavy",
                                                              replica_group="solo"),
                            "LxcwatchReplicaNapiHeavy for `solo`", remaining(onset + 30), diagnose=the_lab.diagnose)
    (labels, states), = warned.items()  # one warning: a's
    labels = dict(labels)
    assert (labels["replica"], labels["instance"], labels["severity"]) == ("a", heavy.target, "warning")
    assert "pending" in states  # `for: 5m` (the episode is shorter): never reaches the ticket webhook here

    # No page: the episode outlasts the page's 1 m `for` (a pair this long pages); wait as long as a page would
    # have taken to arrive (hysteresis + `for` + 10 s group_wait + margin).
    assert last - first > 65, "the solo trace's episode is too short to show that no page follows"
    page_window = onset + 100
    lab.wait_until(lambda: time.time() > page_window, "the page window of `solo` to pass", remaining(page_window))
    assert prom_max(the_lab, 'max_over_time(replica_group:lxcwatch_host_napi_heavy:count{replica_group="solo"}[10m])') == 1
    assert not the_lab.observer.matching(alertname=PAGE, replica_group="solo")
    assert not the_lab.webhook.received("pager", replica_group="solo")


def prom_max(the_lab, expr: str) -> float:
    result = the_lab.prometheus.query(expr)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_both_replicas_heavy_page_once_and_resolve(the_lab, record_property):
    a, b = the_lab.replica("pair", "a"), the_lab.replica("pair", "b")
    (a_first, a_last), (b_first, b_last) = a.heavy_span(), b.heavy_span()
    onset = max(a.started + a_first, b.started + b_first)  # the second replica's first heavy record
    end = min(a.started + a_last, b.started + b_last)  # the first replica's last heavy record
    assert end - onset > 80, "the pair traces overlap too briefly for a 1 m `for`"
    expected = {"alertname": PAGE, "replica_group": "pair", "severity": "critical"}

    def pages(status):
        return [n for n in the_lab.webhook.received("pager", replica_group="pair") if n.payload["status"] == status]

    fired = lab.wait_until(lambda: pages("firing"), "the pair page", remaining(onset + 120), diagnose=the_lab.diagnose)
    page = fired[0]
    onset_to_page = page.received - onset
    record_property("onset_to_page_seconds", round(onset_to_page, 1))
    print(f"\nonset to page (lab: {lab.SCRAPE_INTERVAL:g} s scrape, {lab.EVAL_INTERVAL:g} s evaluation): "
          f"{onset_to_page:.1f} s")
    assert page.received < end + LEAVE, "the page came after the episode ended"
    assert onset_to_page < 90, f"onset to page {onset_to_page:.1f} s in the lab"
    assert page.payload["groupLabels"] == {"replica_group": "pair"}
    assert [al["labels"] for al in page.payload["alerts"]] == [expected]
    assert page.payload["alerts"][0]["status"] == "firing"

    # Prometheus' /api/v1/alerts, as polled all along: one pair alert in the whole lab, pending then firing.
    (labels, states), = the_lab.observer.matching(alertname=PAGE).items()
    assert dict(labels) == expected
    assert "firing" in states and states["pending"] <= states["firing"] <= page.received

    resolved = lab.wait_until(lambda: pages("resolved"), "the pair page to resolve",
                              remaining(end + LEAVE + GROUP_INTERVAL + 25), diagnose=the_lab.diagnose)
    assert [al["labels"] for al in resolved[0].payload["alerts"]] == [expected]
    assert resolved[0].payload["alerts"][0]["status"] == "resolved"
    assert resolved[0].received > end
    assert len(pages("firing")) == 1, "more than one page for the group"
    assert not [al for al in the_lab.prometheus.alerts() if al["labels"]["alertname"] == PAGE]
