"""The alerting lab, end to end on loopback: two lxcwatch agents per replica group, Debian's Prometheus with the
shipped rules, Debian's Alertmanager with the shipped routing, a webhook for the pager and the ticket queue.

Five replica groups run side by side in one lab (one Prometheus, one Alertmanager), so the module takes as long
as its longest scenario (~6.5 minutes: the warnings' `for: 5m` + group_wait), not the sum:
- `kill`: both replicas quiet; one agent is killed -> the redundancy alert and AgentDown, as a ticket; no page;
- `solo`: replica a slides into polling and stays there, b stays quiet -> a's warning as a ticket, no page;
- `pair`: both replicas go heavy -> exactly one critical page for the group, resolved after the traffic stops;
- `containers`: both replicas on the lxc-hybrid fixture (static), whose autostart container `old` is stopped
  -> the no-running-replica page; with probes on loopback, so every panel of the containers view has data;
- `live`: one agent on this machine's own kernel, for the panels only a live host feeds (ksoftirqd CPU time,
  promiscuity counts from netlink);
- `shipped`: both replicas go heavy, watched by a second Prometheus and Alertmanager with nothing changed (15 s
  scrape and evaluation): the onset-to-page time with the shipped defaults, which must stay under 2 minutes.
The replica groups other than `containers` and `live` are replayed traces of tests/support/tracegen.py. At the end every
dashboard panel query runs against the main Prometheus over the lab's whole span and must return data.

The main stack scrapes and evaluates every 1 s instead of 15 s (tests/support/lab.py), so the scenarios show their
alerts seconds after the agents' verdicts; every `for`, group_wait and group_interval is the shipped one.
"""

import time

from tests.support import lab
import pytest

from grafana import queries

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(lab.unavailable()), reason=lab.unavailable() or "-")]

SECONDS = 150  # trace length; the traces end quiet, so every episode ends inside them
SOLO_SECONDS = 450  # the solo episode must outlast the warning's `for: 5m` and the ticket's group_wait
PAGE = "LxcwatchReplicasNapiHeavy"
LEAVE = 10  # the agent's leave_samples at 1 s samples
GROUP_INTERVAL = 60  # the shipped critical route's group_interval: a resolved notification waits up to this long
WARNING_FOR = 300  # the shipped `for` of the warnings below
TICKET_WAIT = 30  # the shipped default route's group_wait (warnings -> ticket)


@pytest.fixture(scope="module")
def the_lab():
    probes = ("web http tcp {alertmanager} 1s\n"  # answers: the lab's Alertmanager
              f"db sql tcp 127.0.0.1:{lab.free_port()} 1s\n")  # refused: nobody listens there
    replicas = [
        lab.Replica("kill", "a", "interrupt_driven", 2, SECONDS),
        lab.Replica("kill", "b", "interrupt_driven", 3, SECONDS),
        lab.Replica("solo", "a", "sustained_polling", 3, SOLO_SECONDS),
        lab.Replica("solo", "b", "interrupt_driven", 1, SOLO_SECONDS),
        lab.Replica("pair", "a", "both_nics_heavy", 1, SECONDS),
        lab.Replica("pair", "b", "both_nics_heavy", 3, SECONDS),
        lab.Replica("containers", "a", fixture="lxc-hybrid", probes=probes),
        lab.Replica("containers", "b", fixture="lxc-hybrid"),
        lab.Replica("live", "a", live=True),  # kernel threads and netlink promiscuity counts: no tree has them
        lab.Replica("shipped", "a", "sustained_polling", 4, SOLO_SECONDS),
        lab.Replica("shipped", "b", "sustained_polling", 5, SOLO_SECONDS),
    ]
    the_lab = lab.Lab(replicas, shipped_groups=("shipped",))
    yield the_lab
    the_lab.close()


def remaining(deadline_wall: float, floor: float = 5.0) -> float:
    return max(floor, deadline_wall - time.time())


def alert_labels(notification) -> list[dict]:
    return sorted((al["labels"] for al in notification.payload["alerts"]), key=lambda al: sorted(al.items()))


def test_killed_agent_raises_the_redundancy_alert(the_lab):
    prom = the_lab.prometheus
    lab.wait_until(lambda: prom.query('replica_group:lxcwatch_replicas_up:count{replica_group="kill"} == 2')
                   and prom.query('replica_group:lxcwatch_replicas_expected:count{replica_group="kill"} == 2'),
                   "Prometheus to know both replicas of `kill`", 30, diagnose=the_lab.diagnose)
    victim = the_lab.replica("kill", "b")
    victim.agent.proc.kill()
    victim.agent.proc.wait(timeout=10)
    killed = time.time()

    degraded = lab.wait_until(lambda: the_lab.observer.matching(alertname="LxcwatchReplicaGroupDegraded",
                                                                replica_group="kill"),
                              "LxcwatchReplicaGroupDegraded for `kill`", 30, diagnose=the_lab.diagnose)
    (labels, states), = degraded.items()
    assert dict(labels) == {"alertname": "LxcwatchReplicaGroupDegraded", "replica_group": "kill",
                            "severity": "warning"}
    assert "pending" in states
    down = lab.wait_until(lambda: the_lab.observer.matching(alertname="LxcwatchAgentDown", replica_group="kill"),
                          "LxcwatchAgentDown for `kill`", 30, diagnose=the_lab.diagnose)
    assert [dict(k)["replica"] for k in down] == ["b"]
    assert dict(next(iter(down)))["instance"] == victim.target

    # Both are warnings with `for: 5m`: one ticket each (Alertmanager groups by alertname and group), nobody paged.
    def both_tickets():
        got = the_lab.webhook.received("ticket", replica_group="kill")
        return got if {n.payload["groupLabels"]["alertname"] for n in got} >= {
            "LxcwatchAgentDown", "LxcwatchReplicaGroupDegraded"} else None
    tickets = lab.wait_until(both_tickets, "the tickets for `kill`", remaining(killed + WARNING_FOR + TICKET_WAIT + 30),
                             diagnose=the_lab.diagnose)
    for ticket in tickets:
        assert ticket.received - killed >= WARNING_FOR
        (labels,) = alert_labels(ticket)
        assert labels["alertname"] == ticket.payload["groupLabels"]["alertname"]
        assert {al["status"] for al in ticket.payload["alerts"]} == {"firing"}
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

    # The warning reaches the ticket queue once the episode has lasted its `for`; the episode outlasts that.
    assert last - first > WARNING_FOR + TICKET_WAIT + 20, "the solo episode is too short for its ticket"
    tickets = lab.wait_until(lambda: the_lab.webhook.received("ticket", replica_group="solo"),
                             "the ticket for `solo`", remaining(onset + WARNING_FOR + TICKET_WAIT + 30),
                             diagnose=the_lab.diagnose)
    assert tickets[0].received - onset >= WARNING_FOR
    (ticket,) = alert_labels(tickets[0])
    assert ticket == labels
    # No page: the episode has by now long outlasted the page's 1 m `for` (a pair this long pages).
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
    print(f"\nonset to page (lab: {lab.LAB_INTERVAL:g} s scrape and evaluation): {onset_to_page:.1f} s")
    assert page.received < end + LEAVE, "the page came after the episode ended"
    assert onset_to_page < 90, f"onset to page {onset_to_page:.1f} s in the lab"
    assert page.payload["groupLabels"] == {"alertname": PAGE, "replica_group": "pair"}  # no cluster label here
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


def test_onset_to_page_with_the_shipped_defaults_is_under_two_minutes(the_lab, record_property):
    """The pair page through Prometheus and Alertmanager configured exactly as shipped (15 s intervals)."""
    a, b = the_lab.replica("shipped", "a"), the_lab.replica("shipped", "b")
    (a_first, a_last), (b_first, b_last) = a.heavy_span(), b.heavy_span()
    onset = max(a.started + a_first, b.started + b_first)
    assert min(a.started + a_last, b.started + b_last) - onset > 180, "the shipped pair overlaps too briefly"
    fired = lab.wait_until(lambda: [n for n in the_lab.webhook.received("shipped/pager", replica_group="shipped")
                                    if n.payload["status"] == "firing"],
                           "the shipped stack's pair page", remaining(onset + 150), diagnose=the_lab.diagnose)
    onset_to_page = fired[0].received - onset
    record_property("onset_to_page_shipped_seconds", round(onset_to_page, 1))
    print(f"\nonset to page (shipped: {lab.SHIPPED_INTERVAL:g} s scrape and evaluation): {onset_to_page:.1f} s")
    assert [al["labels"] for al in fired[0].payload["alerts"]] == [
        {"alertname": PAGE, "replica_group": "shipped", "severity": "critical"}]
    assert 60 < onset_to_page < 120, f"onset to page {onset_to_page:.1f} s with the shipped defaults"


def test_container_with_no_running_replica_pages(the_lab):
    # lxc-hybrid's `old` starts with the host (lxc.start.auto = 1) and is stopped on both replicas. Its partials
    # and the alert run in 1 m groups (kept at 1 m in the lab): up to 60 s until the partials are recorded, 60 s
    # until the alert's group reads them, its `for: 2m`, Alertmanager's group_wait of 10 s, and 30 s to spare.
    started = the_lab.replica("containers", "a").started
    pages = lab.wait_until(lambda: the_lab.webhook.received("pager", replica_group="containers"),
                           "the page for `containers`", remaining(started + 60 + 60 + 120 + 10 + 30),
                           diagnose=the_lab.diagnose)
    assert alert_labels(pages[0]) == [{"alertname": "LxcwatchContainerNoRunningReplica", "container": "old",
                                       "replica_group": "containers", "severity": "critical"}]
    assert pages[0].received - started >= 120  # its `for: 2m`


def test_every_dashboard_panel_returns_data(the_lab):
    """Each panel's query, as Grafana would send it for the lab's whole span with every variable at "All"."""
    start = min(r.started for r in the_lab.replicas)
    empty = []
    for uid, title, expr in queries.panel_queries(job="lxcwatch", rate_interval="1m"):
        if not the_lab.prometheus.query_range(expr, start, time.time(), step=5):
            empty.append(f"{uid} / {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_instance_variable_follows_the_replica_group(the_lab):
    """The instance variable's query: all hosts for "All" groups, only the chosen group's members otherwise."""
    def instances(replica_group):
        found = set()
        for _, _, expr in queries.variable_queries(job="lxcwatch", replica_group=replica_group):
            found |= {r["metric"]["instance"] for r in the_lab.prometheus.query(expr)}
        return found
    answering = {r["metric"]["instance"] for r in the_lab.prometheus.query('up{job="lxcwatch"} == 1')}
    assert len(answering) >= 8 and instances(".*") == answering  # every host (kill's b is dead by now)
    assert instances("pair") == {the_lab.replica("pair", "a").target, the_lab.replica("pair", "b").target}
