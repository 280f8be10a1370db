"""lxcwatch's monitoring mixin: the recording rules, alerts and dashboards generated from deploy/mixin/config.yml."""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIG = HERE / "config.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"
HOST, GLOBAL = "host", "global"  # the tiers: per Prometheus (per-host partials), global view (groups)
GROUPED = 'replica_group!=""'  # members only: older agents of no group export replica_group=""
BRIDGED = 'master!=""'  # links that are ports of a bridge or bond
NOTHING = 'driver="", driver!=""'  # an empty known-bad list


@dataclass(frozen=True)
class Config:
    selector: str
    cluster_label: str
    group_labels: list[str]
    host_labels: list[str]
    runbook_url: str
    dashboard_url: str
    interval: str
    slow_interval: str
    known_bad_drivers: list[dict]
    thresholds: dict
    for_: dict

    @property
    def host(self) -> str:
        """Labels of one host, for by/on clauses."""
        return ", ".join(self.host_labels)

    @property
    def group(self) -> str:
        return ", ".join(self.group_labels)

    @property
    def replica(self) -> str:
        """A group's labels plus the replica name: one per distinct replica."""
        return ", ".join([*self.group_labels, "replica"])

    @property
    def member_labels(self) -> list[str]:
        """The labels the agent's replica info adds to a host: replica_group and replica."""
        return [label for label in [*self.group_labels, "replica"] if label not in self.host_labels]

    @property
    def member(self) -> str:
        """A host's labels plus its membership, for by clauses of membership series."""
        return ", ".join([*self.host_labels, *self.member_labels])

    def sel(self, *more: str) -> str:
        return "{" + ", ".join([self.selector, *more]) + "}"


def load(path: Path = CONFIG) -> Config:
    """The configuration at path, checked; a clear message names what is wrong."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    keys = {f.replace("for_", "for") for f in Config.__dataclass_fields__}
    if not isinstance(raw, dict) or set(raw) != keys:
        got = set(raw) if isinstance(raw, dict) else set()
        raise ValueError(f"{path}: missing {sorted(keys - got)}, unknown {sorted(got - keys)}")
    raw["for_"] = raw.pop("for")
    config = Config(**raw)
    if "replica_group" not in config.group_labels:
        raise ValueError(f"{path}: group_labels must contain replica_group")
    outside = [label for label in config.group_labels if label not in ("replica_group", *config.host_labels)]
    if outside:
        raise ValueError(f"{path}: group labels {outside} must be target labels, listed in host_labels too")
    if config.cluster_label and config.cluster_label not in config.group_labels:
        raise ValueError(f"{path}: cluster_label {config.cluster_label} must be one of group_labels")
    return config


@dataclass
class Rule:
    """One recording rule or alert, with its tier and the comment written above it."""
    name: str
    expr: str
    tier: str
    comment: str = ""
    alert: bool = False
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    for_: str = ""


@dataclass
class Group:
    name: str
    interval: str
    rules: list[Rule]
    comment: str = ""


# --- the rules ----------------------------------------------------------------------------------------------


def where(c: Config, what: str = "replica group {{ $labels.replica_group }}") -> str:
    """A group's name in a description, with its cluster when there is one."""
    if not c.cluster_label:
        return what
    return f"{what}{{{{ with $labels.{c.cluster_label} }}}} in cluster {{{{ . }}}}{{{{ end }}}}"


def member_labels_join(c: Config) -> str:
    """Adds replica_group and replica (when the host has them) to a per-host series."""
    return (f"* on ({c.host}) group_left ({', '.join(c.member_labels)}) instance:lxcwatch_replica_labels:info")


def known_bad_expr(c: Config) -> str:
    branches = []
    for entry in c.known_bad_drivers:
        link = c.sel(f"driver={quote(entry['driver'])}", f"driver_version=~{quote(entry['version_regex'])}")
        branches.append(
            "label_replace(\n"
            f"  max by ({c.host}, device, driver, driver_version) (\n"
            f"    lxcwatch_link_info{link}\n"
            "  ),\n"
            f"  \"known_bad\", {quote(entry['reason'])}, \"\", \"\"\n"
            ")")
    return "\nor\n".join(branches) if branches else f"lxcwatch_link_info{c.sel(NOTHING)}"


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def member_info(c: Config) -> str:
    """The agent's replica membership, one series per member host."""
    return f"max by ({c.member}) (lxcwatch_replica_info{c.sel(GROUPED)})"


def host_partials(c: Config) -> list[Rule]:
    """Per-host series, each carrying the group labels: all a group rule reads."""
    h, s = c.host, c.sel
    info = member_info(c)
    return [
        Rule("instance:lxcwatch_replica_info:last_known", tier=HOST, comment=(
            "Last known replica membership of every target: what the agent exports now (it wins when the labels\n"
            "change), else what this rule recorded on its previous evaluation (it reads its own output, so a\n"
            "member whose agent is down stays known while its target exists), else what the agent exported in\n"
            "the last hour (after a Prometheus restart; recorded once a minute by the slow group). A target that\n"
            "left service discovery is forgotten one hour after its last `up` sample."),
            expr=f"""(
    {info}
  or on ({h})
    instance:lxcwatch_replica_info:last_known
  or on ({h})
    instance:lxcwatch_replica_info:max_over_time1h
)
and on ({h})
  (up{s()} or on ({h}) instance:lxcwatch_up:max_over_time1h)"""),
        Rule("instance:lxcwatch_replica_labels:info", tier=HOST, comment=(
            "The labels every per-host alert is joined with: replica_group and replica for members, none for\n"
            "hosts in no replica group (their alerts still fire, ungrouped)."),
            expr=f"instance:lxcwatch_replica_info:last_known\nor on ({h})\ngroup by ({h}) (up{s()})"),
        Rule("instance:lxcwatch_replica_info:up", tier=HOST, comment=(
            "Members that answer now and report their membership."),
            expr=f"{info}\nand on ({h}) (up{s()} == 1)"),
        Rule("instance:lxcwatch_host_napi_blind:member", tier=HOST, comment=(
            "Members that answer but cannot tell whether they are NAPI-heavy (a source the verdict needs failed:\n"
            "lxcwatch_host_napi_heavy is absent). Agents older than lxcwatch_host_napi_verdict_known can always tell."),
            expr=f"{info}\nand on ({h}) (lxcwatch_host_napi_verdict_known{s()} == 0)"),
        Rule("instance_device:lxcwatch_link_known_bad_driver:info", tier=HOST, comment=(
            "NICs whose driver is on the known-bad list (deploy/mixin/config.yml, one `or` branch per entry); the\n"
            "known_bad label says why."),
            expr=known_bad_expr(c)),
    ]


def heavy_members(c: Config) -> str:
    """Members whose host verdict is NAPI-heavy now, from the agents' own two series."""
    return f"{member_info(c)}\nand on ({c.host}) (lxcwatch_host_napi_heavy{c.sel()} == 1)"


def heavy_partial(c: Config) -> Rule:
    return Rule("instance:lxcwatch_host_napi_heavy:member", tier=HOST, comment=(
        "Members whose host verdict is NAPI-heavy now (the group count and the blind alert read it; the page\n"
        "computes the same from the agents' series itself)."),
        expr=heavy_members(c))


def host_slow(c: Config) -> list[Rule]:
    """Per-host rules that need no 15 s evaluation: what feeds 10-minute alerts, and the 1-hour memory."""
    h, m, s = c.host, c.member, c.sel
    return [
        Rule("instance_device:lxcwatch_link_known_bad_driver_promiscuous:info", tier=HOST, comment=(
            "Known-bad NICs that are promiscuous now, with the host's group labels."),
            expr=(f"(\n  instance_device:lxcwatch_link_known_bad_driver:info\n"
                  f"  and on ({h}, device) (lxcwatch_link_promiscuous{s()} == 1)\n)\n{member_labels_join(c)}")),
        Rule("instance:lxcwatch_replica_info:max_over_time1h", tier=HOST, comment=(
            "Membership exported in the last hour: bootstraps last_known after a Prometheus restart."),
            expr=f"max by ({m}) (max_over_time(lxcwatch_replica_info{s(GROUPED)}[1h]))"),
        Rule("instance:lxcwatch_up:max_over_time1h", tier=HOST, comment=(
            "Targets scraped in the last hour: last_known forgets a target one hour after it left discovery."),
            expr=f"max by ({h}) (max_over_time(up{s()}[1h]))"),
        Rule("instance:lxcwatch_softnet_dropped:rate2m", tier=HOST,
             expr=f"sum by ({h}) (rate(lxcwatch_softnet_dropped_total{s()}[2m]))"),
        Rule("instance:lxcwatch_softnet_times_squeezed:rate2m", tier=HOST,
             expr=f"sum by ({h}) (rate(lxcwatch_softnet_times_squeezed_total{s()}[2m]))"),
        Rule("instance_device:lxcwatch_bridge_port_dropped:rate2m", tier=HOST, comment=(
            "Drops on links that are ports of a bridge: received and dropped, plus transmitted and dropped (a\n"
            "host-side veth counts the bridge's frames it could not hand to the container as tx_dropped).\n"
            "`master` names the bridge. A 2-minute window once a minute reads each sample twice (a 5-minute\n"
            "window every 15 s read it 20 times: 62 % of all samples read at 1,000 hosts, issue 14). Only links\n"
            "that drop are joined and recorded (normally none): the alert reads nothing else."),
            expr=f"""(
    rate(lxcwatch_link_receive_dropped_total{s()}[2m])
  + rate(lxcwatch_link_transmit_dropped_total{s()}[2m])
  > 0
)
* on ({h}, device) group_left (master)
  (
    max by ({h}, device, master) (lxcwatch_link_info{s(BRIDGED)})
    and on ({h}, master)
      label_replace(lxcwatch_bridge_ports{s()}, "master", "$1", "bridge", "(.+)")
  )"""),
    ]


def container_partials(c: Config) -> list[Rule]:
    """Per member: the containers that run (~100 series per host), and the exceptions, containers that should run
    and are stopped (normally none): all LxcwatchContainerNoRunningReplica reads."""
    h, s = c.host, c.sel
    join = f"* on ({h}) group_left ({', '.join(c.member_labels)}) instance:lxcwatch_replica_info:last_known"
    return [
        Rule("instance_container:lxcwatch_container_running:member", tier=HOST,
             comment="Per member and container that runs: 1 (a stopped one has no series).",
             expr=f"max by ({h}, container) (lxcwatch_container_running{s()} == 1)\n{join}"),
        Rule("instance_container:lxcwatch_container_stopped_autostart:member", tier=HOST, comment=(
            "Per member and container that starts with the host (lxc.start.auto = 1) and is stopped: 1. Normally\n"
            "none; a container whose state is unknown is not here."),
            expr=(f"max by ({h}, container) (\n  (lxcwatch_container_autostart{s()} == 1)\n"
                  f"  and on ({h}, container) (lxcwatch_container_running{s()} == 0)\n)\n{join}")),
    ]


def count_replicas(c: Config, series: str) -> str:
    """Distinct replicas per group among the series (which carry the group labels)."""
    if "\n" in series:
        series = "\n" + textwrap.indent(series, "    ") + "\n  "
    return f"count by ({c.group}) (\n  count by ({c.replica}) ({series})\n)"


def group_records(c: Config) -> list[Rule]:
    g = c.group
    return [
        Rule("replica_group:lxcwatch_replicas_expected:count", tier=GLOBAL, comment=(
            "Replicas a group should have: distinct replica names of its last known members."),
            expr=count_replicas(c, "instance:lxcwatch_replica_info:last_known")),
        Rule("replica_group:lxcwatch_replicas_up:count", tier=GLOBAL, comment=(
            "Replicas of a group whose agent answers now and reports the membership (0 when none)."),
            expr=(f"{count_replicas(c, 'instance:lxcwatch_replica_info:up')}\n"
                  f"or on ({g})\nreplica_group:lxcwatch_replicas_expected:count * 0")),
        Rule("replica_group:lxcwatch_host_napi_heavy:count", tier=GLOBAL, comment=(
            "Distinct replicas of a group that are NAPI-heavy now (the page computes the same itself)."),
            expr=count_replicas(c, "instance:lxcwatch_host_napi_heavy:member")),
        Rule("replica_group:lxcwatch_host_napi_blind:count", tier=GLOBAL, comment=(
            "Replicas of a group that answer but cannot tell whether they are NAPI-heavy (no series when none)."),
            expr=count_replicas(c, "instance:lxcwatch_host_napi_blind:member")),
        Rule("replica_group:lxcwatch_link_known_bad_driver_promiscuous:count", tier=GLOBAL, comment=(
            "Distinct replicas of a group with at least one promiscuous known-bad NIC."),
            expr=count_replicas(c, 'instance_device:lxcwatch_link_known_bad_driver_promiscuous:info{replica_group!=""}')),
    ]


HOST_DASHBOARD = "lxcwatch-host"
FLEET_DASHBOARD = "lxcwatch-fleet"
CONTAINERS_DASHBOARD = "lxcwatch-containers"


def dashboard_link(c: Config, uid: str, variables: list[str]) -> str:
    """The Grafana URL of a dashboard with the alert's labels as its variables."""
    names = {"cluster": c.cluster_label} if c.cluster_label else {}
    query = "&".join(f"var-{v}={{{{ $labels.{names.get(v, v)} }}}}" for v in variables
                     if v != "cluster" or c.cluster_label)
    return f"{c.dashboard_url}/d/{uid}/{uid}" + (f"?{query}" if query else "")


def alert(c: Config, name: str, expr: str, severity: str, summary: str, description: str, tier: str,
          dashboard: tuple[str, list[str]], comment: str = "") -> Rule:
    return Rule(name, expr, tier, comment, alert=True, labels={"severity": severity}, for_=c.for_[name],
                annotations={"summary": summary, "description": description,
                             "runbook_url": f"{c.runbook_url}#{name.lower()}",
                             "dashboard_url": dashboard_link(c, *dashboard)})


def page(c: Config) -> Rule:
    return alert(
        c, "LxcwatchReplicasNapiHeavy",
        count_replicas(c, heavy_members(c)) + f" >= {c.thresholds['page_replicas']}",
        "critical", "Two or more replicas of a replica group are NAPI-heavy at the same time.",
        f"{{{{ $value }}}} replicas of {where(c)} are in NAPI polling-heavy mode at the same time; the group "
        "has no healthy spare for the receive path.", GLOBAL, (FLEET_DASHBOARD, ["cluster", "replica_group"]),
        comment=(
            "THE PAGE. Two or more replicas of one group NAPI-heavy in the same evaluation, for 1 minute. It reads\n"
            "the agents' own two series per host, not a recorded partial, so on a global view no shard's evaluation\n"
            "comes in between. Onset to notification on one Prometheus, worst case: 4-5 s agent hysteresis + 15 s\n"
            "scrape + 15 s evaluation + 60 s `for` + 10 s Alertmanager group_wait = ~105 s; measured as shipped:\n"
            "docs/detection.md. On a global view remote write and the store's visibility come on top (docs/fleet.md)."))


def group_alerts(c: Config) -> list[Rule]:
    g = c.group
    fleet = (FLEET_DASHBOARD, ["cluster", "replica_group"])
    return [
        alert(c, "LxcwatchReplicaGroupDegraded",
              f"(replica_group:lxcwatch_replicas_up:count > 0)\n< on ({g}) replica_group:lxcwatch_replicas_expected:count",
              "warning", "A replica group lost redundancy.",
              f"Only {{{{ $value }}}} replicas of {where(c)} report through lxcwatch; the others' agents are down or "
              "do not export lxcwatch_replica_info.", GLOBAL, fleet),
        alert(c, "LxcwatchReplicaGroupDown",
              f"replica_group:lxcwatch_replicas_up:count == 0\nand on ({g}) replica_group:lxcwatch_replicas_expected:count > 0",
              "critical", "No replica of a replica group is left.",
              f"None of the known replicas of {where(c)} reports through lxcwatch.", GLOBAL, fleet),
        alert(c, "LxcwatchReplicaGroupBlind", f"""replica_group:lxcwatch_host_napi_blind:count
and on ({g})
  (
      (
        replica_group:lxcwatch_host_napi_blind:count
        unless on ({g})
          count by ({g}) (
            instance:lxcwatch_replica_info:up
            unless on ({c.host}) instance:lxcwatch_host_napi_blind:member
          )
      )
    or
      (
        replica_group:lxcwatch_host_napi_blind:count
        + on ({g})
          (replica_group:lxcwatch_host_napi_heavy:count or replica_group:lxcwatch_host_napi_blind:count * 0)
      ) >= {c.thresholds['page_replicas']}
  )
unless on ({g}) (replica_group:lxcwatch_host_napi_heavy:count >= {c.thresholds['page_replicas']})""",
              "warning", "A replica group cannot tell whether its replicas poll together.",
              f"{{{{ $value }}}} replica(s) of {where(c)} have had an unknown NAPI verdict "
              "(lxcwatch_host_napi_verdict_known = 0) for 5 minutes, and no other replica rules out two polling "
              "at once: if the group slid into polling now, the page might not fire.", GLOBAL, fleet,
              comment=(
                  "Blind is not calm: the page can neither fire nor be ruled out when every member that answers\n"
                  "is blind, or the blind members together with the heavy ones are the two the page needs.")),
        alert(c, "LxcwatchKnownBadDriverAllReplicas",
              f"replica_group:lxcwatch_link_known_bad_driver_promiscuous:count\n"
              f">= on ({g}) replica_group:lxcwatch_replicas_expected:count",
              "critical", "Every replica of a replica group has a promiscuous NIC with a known-bad driver.",
              f"All {{{{ $value }}}} replicas of {where(c)} have a promiscuous NIC whose driver is on the known-bad "
              "list; one load spike can take the whole group down.", GLOBAL, fleet),
    ]


def container_alerts(c: Config) -> tuple[Rule, Rule]:
    """(per host, per group): a container that should run is stopped; one runs on no replica of its group."""
    h, s, g = c.host, c.sel, c.group
    return (
        alert(c, "LxcwatchContainerNotRunning",
              f"(\n  (lxcwatch_container_running{s()} == 0)\n  and on ({h}, container) "
              f"(lxcwatch_container_autostart{s()} == 1)\n)\n{member_labels_join(c)}", "warning",
              "A container that should run is stopped.",
              "Container {{ $labels.container }} on {{ $labels.instance }} has lxc.start.auto = 1 but has been "
              "STOPPED for 5 minutes.", HOST, (CONTAINERS_DASHBOARD, ["cluster", "job", "instance", "container"])),
        alert(c, "LxcwatchContainerNoRunningReplica",
              f"max by ({g}, container) (instance_container:lxcwatch_container_stopped_autostart:member)\n"
              f"unless on ({g}, container)\n  instance_container:lxcwatch_container_running:member",
              "critical", "A container runs on no replica of its group.",
              f"Container {{{{ $labels.container }}}} should run in {where(c)} but no replica that reports it runs it.",
              GLOBAL, (CONTAINERS_DASHBOARD, ["cluster", "replica_group", "container"]),
              comment=(
                  "A container that should run on some member and is stopped there (an exception, normally none) and\n"
                  "that no member runs. Writes only its own series: a recording per group and container wrote\n"
                  "475,000 series per evaluation at 10,000 hosts (docs/fleet.md).")),
    )


def host_alerts(c: Config) -> list[Rule]:
    h, s, t = c.host, c.sel, c.thresholds
    join = member_labels_join(c)
    host = (HOST_DASHBOARD, ["cluster", "job", "instance"])
    return [
        alert(c, "LxcwatchReplicaNapiHeavy", f"(lxcwatch_host_napi_heavy{s()} == 1)\n{join}", "warning",
              "A host is NAPI-heavy.",
              "{{ $labels.instance }}{{ with $labels.replica_group }} (replica {{ $labels.replica }} of group "
              "{{ . }}){{ end }} has been in NAPI polling-heavy mode for 5 minutes.", HOST, host),
        alert(c, "LxcwatchReplicaMembershipLost",
              f"instance:lxcwatch_replica_info:last_known\nunless on ({h}) lxcwatch_replica_info{s(GROUPED)}\n"
              f"and on ({h}) (up{s()} == 1)",
              "warning", "A member of a replica group answers but no longer reports its membership.",
              "{{ $labels.instance }} was replica {{ $labels.replica }} of group {{ $labels.replica_group }} and "
              "still answers, but exports no lxcwatch_replica_info: its NAPI verdict no longer counts toward the "
              "group's page.", HOST, host,
              comment="No silent nothing: a member that drops --replica.group leaves its group's alerts silently."),
        alert(c, "LxcwatchKnownBadDriverPromiscuous", "instance_device:lxcwatch_link_known_bad_driver_promiscuous:info",
              "warning", "A NIC with a known-bad driver is promiscuous.",
              "{{ $labels.device }} on {{ $labels.instance }} runs {{ $labels.driver }} {{ $labels.driver_version }} "
              "({{ $labels.known_bad }}) and is promiscuous.", HOST, host),
        alert(c, "LxcwatchSoftnetDrops",
              f"(instance:lxcwatch_softnet_dropped:rate2m > {t['softnet_dropped_per_second']})\n{join}", "warning",
              "A host drops packets because a CPU's backlog queue is full.",
              "{{ $labels.instance }} has dropped {{ $value | humanize }} packets/s from full softnet backlogs "
              "(net.core.netdev_max_backlog) for 10 minutes.", HOST, host),
        alert(c, "LxcwatchBridgePortDrops",
              f"(instance_device:lxcwatch_bridge_port_dropped:rate2m > {t['bridge_port_dropped_per_second']})\n{join}",
              "warning", "A bridge port drops packets.",
              "{{ $labels.device }} (port of {{ $labels.master }}) on {{ $labels.instance }} has dropped "
              "{{ $value | humanize }} packets/s for 10 minutes.", HOST, host),
        alert(c, "LxcwatchSoftnetTimeSqueeze",
              f"(instance:lxcwatch_softnet_times_squeezed:rate2m > {t['time_squeezed_per_second']})\n{join}", "info",
              "A host's softirq receive runs keep running out of budget.",
              "{{ $labels.instance }} has squeezed {{ $value | humanize }} times/s (net_rx_action ran out of "
              "netdev_budget with work left) for 15 minutes.", HOST, host,
              comment="Never a page: Netdata's lesson, a squeeze alone is noise. Routed to no receiver by default."),
        alert(c, "LxcwatchCollectorFailing", f"(lxcwatch_scrape_collector_success{s()} == 0)\n{join}", "warning",
              "An lxcwatch collector keeps failing.",
              "Collector {{ $labels.collector }} on {{ $labels.instance }} has failed for 10 minutes; its metrics "
              "are missing.", HOST, host),
        alert(c, "LxcwatchConfigReloadFailed", f"(lxcwatch_config_last_reload_successful{s()} == 0)\n{join}",
              "warning", "An lxcwatch agent rejected its new configuration.",
              "The last reload of /etc/default/lxcwatch on {{ $labels.instance }} failed; the agent still runs with "
              "the flags it had before, and will fail to start with the file as it is now.", HOST, host),
        alert(c, "LxcwatchAgentDown", f"(up{s()} == 0)\n{join}", "warning", "An lxcwatch agent cannot be scraped.",
              "Prometheus has failed to scrape lxcwatch on {{ $labels.instance }} for 5 minutes.", HOST, host),
        alert(c, "LxcwatchSamplingStalled",
              f"(lxcwatch_last_sample_age_seconds{s()} > {t['sample_age_seconds']})\n{join}", "warning",
              "An lxcwatch agent serves an old sample.",
              "The sample lxcwatch on {{ $labels.instance }} serves is {{ $value | humanizeDuration }} old: its "
              "sampling loop has stalled, so every metric of this host repeats the past.", HOST, host,
              comment=(
                  "Scrapes still answer, but with the same old sample. 30 s is the shipped unit's WatchdogSec, after\n"
                  "which systemd restarts a loop that stopped pinging; stalled 2 minutes longer means the restart\n"
                  "did not help, or no watchdog runs it.")),
        alert(c, "LxcwatchTargetsAbsent", f"absent(up{s()})", "warning",
              "No lxcwatch target is scraped at all.",
              f"No series matches up{s()} (the selector of deploy/mixin/config.yml): every lxcwatch alert, the page "
              "included, is silent. The scrape job is missing or named differently.", HOST, (HOST_DASHBOARD, []),
              comment="No silent nothing: a selector that matches no target leaves every other alert silent."),
    ]


def groups(c: Config) -> list[Group]:
    """Every rule group, per-host tier first (rules that read partials are evaluated after them in a step)."""
    not_running, no_running_replica = container_alerts(c)
    return [
        Group("lxcwatch-host", c.interval, [*host_partials(c), heavy_partial(c)],
              "Per-host partials: run by every Prometheus on its own targets (docs/alerting.md)."),
        Group("lxcwatch-host-slow", c.slow_interval, host_slow(c),
              "Rates behind 10-minute alerts, the known-bad NICs behind 10-minute alerts, and the one-hour\n"
              "membership memory: once a minute is enough."),
        Group("lxcwatch-host-containers", c.slow_interval, [*container_partials(c), not_running],
              "Rules that read every container of a host (~100 series each): once a minute, against `for` of 2\n"
              "and 5 minutes (every 15 s they missed evaluations at 1,000 hosts: docs/fleet.md)."),
        Group("lxcwatch-global", c.interval, group_records(c),
              "Group aggregates of the partials: run on the global view only (docs/alerting.md)."),
        Group("lxcwatch-page", c.interval, [page(c)],
              "The page, alone in its group: no slow rule delays it, and it reads no other rule's output."),
        Group("lxcwatch-group-alerts", c.interval, group_alerts(c)),
        Group("lxcwatch-group-containers", c.slow_interval, [no_running_replica],
              "Reads every grouped host's container partials: once a minute, as they are recorded."),
        Group("lxcwatch-host-alerts", c.interval, host_alerts(c)),
    ]


# --- rendering ----------------------------------------------------------------------------------------------


WIDTH = 100  # of a folded annotation line (ansible-lint, which checks the role's files, allows 160)


def scalar(value) -> str:
    """value as one YAML scalar."""
    return yaml.safe_dump({"k": value}, width=10**6, allow_unicode=True)[3:].rstrip("\n")


def annotation(key: str, value: str, indent: str) -> list[str]:
    """key: value, folded (>-) at single spaces when long; folding gives back the single spaces."""
    if len(value) <= WIDTH or " " not in value or "  " in value or value != value.strip():
        return [f"{indent}{key}: {scalar(value)}"]
    lines = textwrap.wrap(value, WIDTH, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}{key}: >-"] + [f"{indent}  {line}" for line in lines]


def comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in text.splitlines()] if text else []


def render_rule(r: Rule) -> list[str]:
    i = "      "
    out = comment(r.comment, i)
    out.append(f"{i}- {'alert' if r.alert else 'record'}: {r.name}")
    if "\n" in r.expr:
        out += [f"{i}  expr: |"] + [f"{i}    {line}".rstrip() for line in r.expr.splitlines()]
    else:
        out.append(f"{i}  expr: {scalar(r.expr)}")
    if r.alert:
        out.append(f"{i}  for: {r.for_}")
        out += [f"{i}  labels:"] + [f"{i}    {k}: {scalar(v)}" for k, v in r.labels.items()]
        out.append(f"{i}  annotations:")
        for k, v in r.annotations.items():
            out += annotation(k, v, f"{i}    ")
    return out


HEADER = """\
# lxcwatch {what}.
# GENERATED by deploy/mixin/mixin.py from deploy/mixin/config.yml: do not edit, edit that and run `make mixin`.
#
# Selector: {selector}. A replica group is ({group}); a host is ({host}).
# {tiers}
# Runbooks: docs/runbooks.md. Tests: deploy/prometheus/**/*.test.yml (promtool test rules). docs/alerting.md.
"""
TIERS = {
    (HOST, GLOBAL): "Per-host partials and alerts (lxcwatch-host* groups and the page's partial), then group rules\n"
                    "# that read only those partials and must see every member of a group: one Prometheus for all.",
    (HOST,): "Per-host partials and per-host alerts only: load on every Prometheus that scrapes lxcwatch\n"
             "# agents (a shard sees only its own hosts, so no group rule is here).",
    (GLOBAL,): "Group rules only, reading the per-host partials of every shard (the page: the agents'\n"
               "# lxcwatch_replica_info and lxcwatch_host_napi_heavy): load on the global view (a ruler over the\n"
               "# store the shards remote-write into).",
}


def render(c: Config, what: str, tiers: tuple[str, ...], kinds: tuple[bool, ...]) -> str:
    """A rule file of the groups of the given tiers, with recording rules (False) and/or alerts (True)."""
    out = HEADER.format(what=what, selector=c.selector, group=c.group, host=c.host,
                        tiers=TIERS[tiers]).splitlines()
    out.append("groups:")
    for g in groups(c):
        rules = [r for r in g.rules if r.alert in kinds and r.tier in tiers]
        if not rules:
            continue
        out += ["", *comment(g.comment, "  "), f"  - name: {g.name}", f"    interval: {g.interval}", "    rules:"]
        for n, r in enumerate(rules):
            out += ([""] if n and (r.comment or rules[n - 1].comment) else []) + render_rule(r)
    return "\n".join(out) + "\n"


def outputs(c: Config) -> dict[Path, str]:
    """Every generated rule file: the mixin's two, the one-Prometheus file, and the two tiers of a sharded setup."""
    both = (HOST, GLOBAL)
    return {
        HERE / "prometheus_rules.yaml": render(c, "recording rules (prometheusRules)", both, (False,)),
        HERE / "prometheus_alerts.yaml": render(c, "alerts (prometheusAlerts)", both, (True,)),
        PROMETHEUS / "lxcwatch.rules.yml": render(c, "recording and alerting rules, one Prometheus", both,
                                                   (False, True)),
        PROMETHEUS / "sharded" / "lxcwatch.host.rules.yml": render(c, "per-Prometheus rules of a sharded fleet",
                                                                   (HOST,), (False, True)),
        PROMETHEUS / "sharded" / "lxcwatch.global.rules.yml": render(c, "global-view rules of a sharded fleet",
                                                                     (GLOBAL,), (False, True)),
    }


def dashboards(c: Config) -> dict[Path, str]:
    sys.path.insert(0, str(ROOT / "grafana"))
    import generate  # grafana/generate.py (grafanaDashboards)
    return {generate.OUT / name: text for name, text in generate.render(c).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=CONFIG, help="the mixin configuration (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a shipped file differs from the generated one")
    ap.add_argument("--out", type=Path, help="write into this directory (flat) instead of the shipped places")
    ap.add_argument("--no-dashboards", action="store_true", help="rules only (no grafana-foundation-sdk needed)")
    args = ap.parse_args(argv)
    try:
        c = load(args.config)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"mixin: {e}", file=sys.stderr)
        return 2
    try:
        files = outputs(c) | ({} if args.no_dashboards else dashboards(c))
    except KeyError as e:
        print(f"mixin: {args.config}: no `for` or `thresholds` entry {e}", file=sys.stderr)
        return 2
    return write_or_check({args.out / p.name if args.out else p: text for p, text in files.items()}, args.check,
                          "make mixin")


def write_or_check(files: dict[Path, str], check: bool, remedy: str) -> int:
    """Write the files; with `check`, write nothing and return 1 naming those that differ from what is there."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run {remedy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
