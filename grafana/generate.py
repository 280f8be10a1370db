"""Generate lxcwatch's Grafana dashboards (grafana/dashboards/*.json, the mixin's grafanaDashboards) with
grafana-foundation-sdk from deploy/mixin/config.yml; --check compares."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prom_models
from grafana_foundation_sdk.models.common import VisibilityMode

OUT = Path(__file__).resolve().parent / "dashboards"
sys.path.insert(0, str(OUT.parent.parent / "deploy" / "mixin"))
import mixin  # noqa: E402  (deploy/mixin/mixin.py: the configuration)
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["lxcwatch"]

RI = '$__rate_interval'
CONFIG = mixin.load()


def scope(c: mixin.Config) -> str:
    """Cluster and job matchers of every selector; =~ so a multi-value or "All" (.*) selection works."""
    return (f'{c.cluster_label}=~"$cluster", ' if c.cluster_label else "") + 'job=~"$job"'


def sel(c: mixin.Config) -> str:
    """Matchers of every per-host selector: the instance variable, itself limited to the chosen group."""
    return f'{scope(c)}, instance=~"$instance"'


def join_replica(c: mixin.Config) -> str:
    """Adds replica_group and replica to a per-host series (lxcwatch_replica_info is 1, so the value is kept)."""
    return (f'* on ({c.host}) group_left (replica_group, replica) '
            f'lxcwatch_replica_info{{{sel(c)}, replica_group=~"$replica_group"}}')


def runbook(name: str) -> dash.DashboardLink:
    """A panel link to the runbook of the alert the panel is about."""
    return (dash.DashboardLink(f"Runbook: {name}").type(dm.DashboardLinkType.LINK)
            .url(f"{CONFIG.runbook_url}#{name.lower()}").target_blank(True))

MODE_MAP = dm.ValueMap(options={
    "0": dm.ValueMappingResult(text="interrupt-driven", color="green", index=0),
    "1": dm.ValueMappingResult(text="NAPI-heavy", color="red", index=1),
})
BOOL_MAP = dm.ValueMap(options={
    "0": dm.ValueMappingResult(text="no", color="green", index=0),
    "1": dm.ValueMappingResult(text="yes", color="orange", index=1),
})
OK_MAP = dm.ValueMap(options={
    "0": dm.ValueMappingResult(text="failed", color="red", index=0),
    "1": dm.ValueMappingResult(text="ok", color="green", index=1),
})


def q(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    """One Prometheus target on the ${datasource} variable."""
    t = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    if instant:
        t = t.instant().format(prom_models.PromQueryFormat.TABLE)
    return t


def _targets(panel, queries):
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(q(expr, legend, chr(ord("A") + i)))
    return panel


def described(p, desc: str, alerts: tuple[str, ...]):
    """Every panel says what it shows, and links the runbooks of the alerts it is about."""
    p = p.description(desc)
    return p.links([runbook(name) for name in alerts]) if alerts else p


def ts(title: str, queries: list[tuple[str, str]], desc: str, unit: str = "short", w: int = 12, h: int = 8,
       alerts: tuple[str, ...] = ()) -> timeseries.Panel:
    p = timeseries.Panel().title(title).datasource(DS).unit(unit).span(w).height(h).fill_opacity(10)
    return _targets(described(p, desc, alerts), queries)


def timeline(title: str, queries: list[tuple[str, str]], desc: str, mapping: dm.ValueMap | None = MODE_MAP,
             w: int = 12, h: int = 8, alerts: tuple[str, ...] = ()) -> statetimeline.Panel:
    p = statetimeline.Panel().title(title).datasource(DS).span(w).height(h).show_value(
        VisibilityMode.NEVER).merge_values(True)
    if mapping is not None:
        p = p.mappings([mapping])
    return _targets(described(p, desc, alerts), queries)


def tbl(title: str, expr: str, hide: list[str], desc: str, w: int = 12, h: int = 8,
        alerts: tuple[str, ...] = ()) -> table.Panel:
    p = (table.Panel().title(title).datasource(DS).span(w).height(h)
         .with_target(q(expr, "", "A", instant=True))
         .with_transformation(dm.DataTransformerConfig(
             id_val="organize",
             options={"excludeByName": {name: True for name in ["Time", "Value", "__name__", *hide]}})))
    return described(p, desc, alerts)


def stat_panel(title: str, expr: str, desc: str, w: int = 6, h: int = 4, alerts: tuple[str, ...] = ()) -> stat.Panel:
    p = stat.Panel().title(title).datasource(DS).span(w).height(h).unit("short").with_target(q(expr, ""))
    return described(p, desc, alerts)


def query_var(name: str, label: str, query: str, multi: bool = True, regex: str = "") -> dash.QueryVariable:
    v = (dash.QueryVariable(name).label(label).datasource(DS)
         .query({"query": query, "refId": f"{name}-var"})
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if regex:
        v = v.regex(regex)
    if multi:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def instances_of_group(c: mixin.Config) -> str:
    """Hosts of the chosen cluster, job and replica group; hosts in no group only while "All" groups are chosen
    (a matcher on a label a series lacks matches exactly when its regex matches the empty string)."""
    grouped = f'lxcwatch_replica_info{{{scope(c)}, replica_group=~"$replica_group"}}'
    return (f"query_result({grouped} or on ({c.host}) (lxcwatch_build_info{{{scope(c)}, replica_group=~\"$replica_group\"}} "
            f"unless on ({c.host}) lxcwatch_replica_info{{{scope(c)}}}))")


def annotations(c: mixin.Config, scoped: str) -> list[dash.AnnotationQuery]:
    """Firing lxcwatch alerts and host mode changes, on every time panel."""
    return [
        dash.AnnotationQuery().name("Alerts firing").datasource(DS).enable(True).icon_color("red")
        .expr(f'ALERTS{{alertstate="firing", alertname=~"Lxcwatch.+", {scoped}}}'),
        dash.AnnotationQuery().name("Host mode changes").datasource(DS).enable(True).icon_color("orange")
        .expr(f'changes(lxcwatch_host_napi_heavy{{{sel(c)}}}[$__rate_interval]) > 0'),
    ]


def base(c: mixin.Config, uid: str, title: str, desc: str, instance_multi: bool, scoped: str) -> dash.Dashboard:
    """A dashboard with the variables every lxcwatch dashboard has: cluster, job, replica group, instance."""
    d = (dash.Dashboard(title).uid(uid).description(desc).tags(TAGS).editable().refresh("30s")
         .time("now-6h", "now").timezone("utc").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .with_variable(dash.DatasourceVariable("datasource").label("Data source").type("prometheus")))
    if c.cluster_label:
        d = d.with_variable(query_var("cluster", "Cluster",
                                      f"label_values(lxcwatch_build_info{{{c.selector}}}, {c.cluster_label})"))
    cluster = f'{c.cluster_label}=~"$cluster", ' if c.cluster_label else ""
    d = (d.with_variable(query_var("job", "Job", f"label_values(lxcwatch_build_info{{{cluster}{c.selector}}}, job)"))
         .with_variable(query_var("replica_group", "Replica group",
                                  f'label_values(lxcwatch_replica_info{{{scope(c)}}}, replica_group)'))
         .with_variable(query_var("instance", "Instance", instances_of_group(c), multi=instance_multi,
                                  regex='/instance="([^"]+)"/'))
         .link(dash.DashboardLink("lxcwatch").type(dm.DashboardLinkType.DASHBOARDS).tags(TAGS)
               .as_dropdown(True).include_vars(True).keep_time(True).icon("external link")))
    for a in annotations(c, scoped):
        d = d.annotation(a)
    return d


PAGE, WARN = "LxcwatchReplicasNapiHeavy", "LxcwatchReplicaNapiHeavy"


def fleet(c: mixin.Config) -> dash.Dashboard:
    s, join = sel(c), join_replica(c)
    d = base(c, "lxcwatch-fleet", "lxcwatch / Fleet",
             "Receive mode of every host, replica group by replica group (members side by side).", True,
             (f'{c.cluster_label}=~"$cluster", ' if c.cluster_label else "") + 'replica_group=~"$replica_group"')
    d = (d.with_row(dash.Row("Overview"))
         .with_panel(ts("NAPI-heavy hosts per replica group", [(
             f'sum by (replica_group) (lxcwatch_host_napi_heavy{{{s}}} {join})', "{{replica_group}}")],
             "Members of each group in NAPI polling-heavy mode now; 2 or more for 1 minute is the page.",
             w=12, alerts=(PAGE,)))
         .with_panel(ts("Agents up", [(f'sum by (job) (up{{{s}}})', "{{job}}")],
                        "Agents Prometheus scraped successfully, of the chosen hosts.", w=6,
                        alerts=("LxcwatchAgentDown", "LxcwatchReplicaGroupDegraded")))
         .with_panel(ts("Host mode changes", [(
             f'sum by (replica_group) (increase(lxcwatch_host_mode_changes_total{{{s}}}[{RI}]) {join})',
             "{{replica_group}}")], "Changes of the host verdict per group in each interval.", w=6)))
    d = (d.with_row(dash.Row("Replica group $replica_group").repeat("replica_group"))
         .with_panel(timeline("$replica_group: host mode per member", [(
             f'max by (replica) (lxcwatch_host_napi_heavy{{{s}}} {join})', "{{replica}}")],
             "lxcwatch_host_napi_heavy of every member of the group, one lane per replica: two red lanes at once "
             "is the page.", w=24, alerts=(PAGE,)))
         .with_panel(ts("$replica_group: NAPI-heavy NICs per member", [(
             f'sum by (replica) (lxcwatch_nic_napi_heavy{{{s}}} {join})', "{{replica}}")],
             "NICs of each member whose verdict is NAPI-heavy.", w=8, alerts=(WARN,)))
         .with_panel(timeline("$replica_group: host reason per member", [(
             f'max by (replica, reason) (lxcwatch_host_napi_reason{{{s}}} {join}) == 1',
             "{{replica}}: {{reason}}")], "The reason of each member's verdict (none, nic, softnet_pressure).",
             mapping=None, w=8))
         .with_panel(tbl("$replica_group: NICs and reasons now",
                         f'max by (replica, instance, device, reason) (lxcwatch_nic_napi_reason{{{s}}} {join}) == 1',
                         [], "Every NIC of the group with the reason of its verdict now.", w=8)))
    return d


def host(c: mixin.Config) -> dash.Dashboard:
    s = sel(c)
    d = base(c, "lxcwatch-host", "lxcwatch / Host",
             "Receive path of one host: per NIC packets vs hard IRQs, softnet per CPU, NET_RX, bridges, drivers.",
             False, 'instance=~"$instance"')
    d = d.with_variable(query_var("device", "NIC", f'label_values(lxcwatch_nic_interrupts_total{{{s}}}, device)'))
    nic = f'{s}, device=~"$device"'
    events = "suffix:/s"
    d = (d.with_row(dash.Row("Verdict"))
         .with_panel(timeline("Host mode", [(f'lxcwatch_host_napi_heavy{{{s}}}', "{{instance}}")],
                              "The host verdict: interrupt-driven or NAPI-heavy.", w=8, h=5, alerts=(WARN, PAGE)))
         .with_panel(timeline("Host reason", [(f'lxcwatch_host_napi_reason{{{s}}} == 1', "{{reason}}")],
                              "Why the host verdict is what it is (none, nic, softnet_pressure).",
                              mapping=None, w=8, h=5))
         .with_panel(timeline("NIC mode", [(f'lxcwatch_nic_napi_heavy{{{s}}}', "{{device}}")],
                              "The verdict of each NIC.", w=8, h=5)))
    d = (d.with_row(dash.Row("NIC $device").repeat("device"))
         .with_panel(ts("$device: packets/s vs hard IRQs/s vs packets per IRQ", [
             (f'rate(lxcwatch_link_receive_packets_total{{{nic}}}[{RI}])', "packets/s"),
             (f'sum by (device) (rate(lxcwatch_nic_interrupts_total{{{nic}, vector=~"rx|txrx"}}[{RI}]))',
              "receive IRQs/s"),
             (f'lxcwatch_nic_packets_per_interrupt{{{nic}}}', "packets per IRQ"),
         ], "Packets per IRQ (right axis) climbs from a handful to hundreds when the NIC polls.", unit="pps", w=12)
             .with_override(dm.MatcherConfig(id_val="byName", options="receive IRQs/s"),
                            [dm.DynamicConfigValue(id_val="unit", value=events)])
             .with_override(dm.MatcherConfig(id_val="byName", options="packets per IRQ"),
                            [dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                             dm.DynamicConfigValue(id_val="unit", value="none")]))
         .with_panel(ts("$device: hard IRQs/s by vector", [(
             f'sum by (vector) (rate(lxcwatch_nic_interrupts_total{{{nic}}}[{RI}]))', "{{vector}}")],
             "Hard interrupts of the NIC per second, by queue vector (rx, tx, txrx, other).", unit=events, w=6))
         .with_panel(timeline("$device: reason", [(f'lxcwatch_nic_napi_reason{{{nic}}} == 1', "{{reason}}")],
                              "Why the NIC's verdict is what it is.", mapping=None, w=6)))
    d = (d.with_row(dash.Row("Softnet per CPU"))
         .with_panel(ts("Processed packets/s per CPU", [(
             f'rate(lxcwatch_softnet_processed_total{{{s}}}[{RI}])', "cpu {{cpu}}")],
             "Packets each CPU's softirq took from its backlog and NIC queues (/proc/net/softnet_stat).",
             unit="pps", w=8))
         .with_panel(ts("Backlog drops/s per CPU", [(
             f'rate(lxcwatch_softnet_dropped_total{{{s}}}[{RI}])', "cpu {{cpu}}")],
             "Packets dropped because a CPU's backlog was full (net.core.netdev_max_backlog).", unit="pps", w=8,
             alerts=("LxcwatchSoftnetDrops",)))
         .with_panel(ts("Time squeezes/s per CPU", [(
             f'rate(lxcwatch_softnet_times_squeezed_total{{{s}}}[{RI}])', "cpu {{cpu}}")],
             "net_rx_action runs that ran out of budget with work left.", unit=events, w=8,
             alerts=("LxcwatchSoftnetTimeSqueeze",)))
         .with_panel(ts("NET_RX softirqs/s per CPU", [(
             f'rate(lxcwatch_softirqs_total{{{s}, vector="NET_RX"}}[{RI}])', "cpu {{cpu}}")],
             "NET_RX softirqs raised per CPU (/proc/softirqs).", unit=events, w=8))
         .with_panel(ts("Softirq CPU share per CPU", [
             (f'rate(lxcwatch_cpu_softirq_seconds_total{{{s}}}[{RI}])', "softirq cpu {{cpu}}"),
             (f'rate(lxcwatch_ksoftirqd_cpu_seconds_total{{{s}}}[{RI}])', "ksoftirqd cpu {{cpu}}"),
         ], "Share of each CPU spent in softirq context, and in its ksoftirqd thread (deferred softirq work).",
             unit="percentunit", w=8))
         .with_panel(ts("NET_RX softirqs per hard IRQ", [(
             f'lxcwatch_nic_softirqs_per_interrupt{{{s}}}', "{{device}}")],
             "NET_RX softirqs per hard IRQ of each NIC: above 1 when softirqs re-run without new IRQs.",
             unit="none", w=8)))
    d = (d.with_row(dash.Row("Links and bridges"))
         .with_panel(timeline("Promiscuous links", [(
             f'lxcwatch_link_promiscuous{{{s}}}', "{{device}}")],
             "Links in promiscuous mode (a bridge port, tcpdump).", mapping=BOOL_MAP, w=8,
             alerts=("LxcwatchKnownBadDriverPromiscuous",)))
         .with_panel(ts("Promiscuity (users of promiscuous mode)", [(
             f'lxcwatch_link_promiscuity{{{s}}}', "{{device}}")],
             "How many users asked each link for promiscuous mode.", unit="none", w=8))
         .with_panel(ts("Bridge port drops/s", [
             (f'sum by (master, device) (rate(lxcwatch_link_receive_dropped_total{{{s}}}[{RI}]) '
              f'* on ({c.host}, device) group_left (master) lxcwatch_link_info{{{s}, master!=""}})',
              "{{master}}/{{device}} rx"),
             (f'sum by (master, device) (rate(lxcwatch_link_transmit_dropped_total{{{s}}}[{RI}]) '
              f'* on ({c.host}, device) group_left (master) lxcwatch_link_info{{{s}, master!=""}})',
              "{{master}}/{{device}} tx"),
         ], "Drops of links that are ports of a bridge or bond (master from lxcwatch_link_info).", unit="pps",
             w=8, alerts=("LxcwatchBridgePortDrops",)))
         .with_panel(tbl("Drivers", f'lxcwatch_link_info{{{s}, driver!=""}}', ["job", "instance"],
                         "Driver, version, firmware and bus of every NIC (the known-bad list matches these).",
                         w=24, alerts=("LxcwatchKnownBadDriverPromiscuous", "LxcwatchKnownBadDriverAllReplicas"))))
    return d


def containers(c: mixin.Config) -> dash.Dashboard:
    s = sel(c)
    d = base(c, "lxcwatch-containers", "lxcwatch / Containers",
             "LXC containers of a host: state, resources, veths on their bridges, probes.", False,
             'instance=~"$instance"')
    d = d.with_variable(query_var("container", "Container",
                                  f'label_values(lxcwatch_container_info{{{s}}}, container)'))
    ct = f'{s}, container=~"$container"'
    stopped = ("LxcwatchContainerNotRunning", "LxcwatchContainerNoRunningReplica")
    d = (d.with_row(dash.Row("State"))
         .with_panel(stat_panel("Running", f'sum(lxcwatch_container_running{{{ct}}})', "Containers running now."))
         .with_panel(stat_panel("Stopped", f'count(lxcwatch_container_running{{{ct}}} == 0)',
                                "Containers stopped now."))
         .with_panel(stat_panel("Autostart but stopped",
                                f'count(lxcwatch_container_autostart{{{ct}}} == 1 and on ({c.host}, container) '
                                f'lxcwatch_container_running{{{ct}}} == 0)',
                                "Containers with lxc.start.auto = 1 that are stopped.", alerts=stopped))
         .with_panel(stat_panel("Read failures", f'count(lxcwatch_container_read_success{{{ct}}} == 0)',
                                "Containers whose state or cgroup lxcwatch could not read."))
         .with_panel(timeline("Running", [(f'lxcwatch_container_running{{{ct}}}', "{{container}}")],
                              "Each container's running state over time.",
                              mapping=dm.ValueMap(options={
                                  "0": dm.ValueMappingResult(text="stopped", color="red", index=0),
                                  "1": dm.ValueMappingResult(text="running", color="green", index=1)}), w=12,
                              alerts=stopped))
         .with_panel(tbl("State now", f'lxcwatch_container_state{{{ct}}} == 1', ["job", "instance"],
                         "Each container's LXC state now.", w=12)))
    d = (d.with_row(dash.Row("Resources"))
         .with_panel(ts("CPU", [(f'rate(lxcwatch_container_cpu_seconds_total{{{ct}}}[{RI}])', "{{container}}")],
                        "CPU time of each container's cgroup, in CPUs.", unit="percentunit", w=8))
         .with_panel(ts("Memory vs limit", [
             (f'lxcwatch_container_memory_bytes{{{ct}}}', "{{container}}"),
             (f'lxcwatch_container_memory_limit_bytes{{{ct}}}', "{{container}} limit"),
         ], "Memory of each container's cgroup, and its limit.", unit="bytes", w=8))
         .with_panel(ts("Memory share of limit", [(
             f'lxcwatch_container_memory_bytes{{{ct}}} / lxcwatch_container_memory_limit_bytes{{{ct}}}',
             "{{container}}")], "Memory over its limit: near 1 the OOM killer acts.", unit="percentunit", w=8))
         .with_panel(ts("Processes", [(f'lxcwatch_container_processes{{{ct}}}', "{{container}}")],
                        "Processes in each container.", unit="none", w=8))
         .with_panel(ts("OOM kills", [(
             f'increase(lxcwatch_container_oom_kills_total{{{ct}}}[{RI}])', "{{container}}")],
             "Processes the OOM killer killed in each container, per interval.", unit="none", w=8))
         .with_panel(ts("Received packets/s", [(
             f'rate(lxcwatch_container_receive_packets_total{{{ct}}}[{RI}])', "{{container}} {{interface}}")],
             "Packets each container's interfaces received.", unit="pps", w=8)))
    d = (d.with_row(dash.Row("Network and probes"))
         .with_panel(timeline("veth attached to its bridge", [(
             f'lxcwatch_container_veth_attached{{{ct}}}', "{{container}} {{interface}} → {{bridge}}")],
             "Whether each container's host-side veth is a port of the bridge its config names.",
             mapping=dm.ValueMap(options={
                 "0": dm.ValueMappingResult(text="detached", color="red", index=0),
                 "1": dm.ValueMappingResult(text="attached", color="green", index=1)}), w=12))
         .with_panel(timeline("veth up", [(f'lxcwatch_container_veth_up{{{ct}}}', "{{container}} {{interface}}")],
                              "Whether each container's host-side veth is up.", mapping=OK_MAP, w=12))
         .with_panel(timeline("Probes", [(
             f'lxcwatch_container_probe_success{{{ct}}}', "{{container}} {{probe}}")],
             "Result of each configured probe of each container.", mapping=OK_MAP, w=12))
         .with_panel(ts("Probe duration", [(
             f'lxcwatch_container_probe_duration_seconds{{{ct}}}', "{{container}} {{probe}}")],
             "How long each probe took.", unit="s", w=12)))
    return d


def render(c: mixin.Config = CONFIG) -> dict[str, str]:
    """File name -> JSON text of every dashboard (sorted keys, indent 2, trailing newline)."""
    out = {}
    for build in (fleet, host, containers):
        model = json.loads(json.dumps(build(c).build(), cls=JSONEncoder))
        model["id"] = None  # provisioning: Grafana assigns the id, the uid identifies the dashboard
        n = 0
        for panel in model.get("panels", []):  # unique panel ids in grid order (the SDK leaves them 0)
            for p in [panel, *panel.get("panels", [])]:
                n += 1
                p["id"] = n
        out[f'{model["uid"]}.json'] = json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs")
    args = ap.parse_args(argv)
    return mixin.write_or_check({OUT / name: text for name, text in render().items()}, args.check,
                                "python grafana/generate.py")


if __name__ == "__main__":
    sys.exit(main())
