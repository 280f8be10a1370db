"""Generate lxcwatch's Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk; --check compares."""

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
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["lxcwatch"]

# Selectors shared by every query; all use =~ so a multi-value or "All" (.*) selection works.
SEL = 'job=~"$job", instance=~"$instance"'
RI = '$__rate_interval'
# Adds replica_group and replica to a per-host series (lxcwatch_replica_info is 1, so the value is kept).
JOIN_REPLICA = ('* on (job, instance) group_left (replica_group, replica) '
                'lxcwatch_replica_info{job=~"$job", instance=~"$instance", replica_group=~"$replica_group"}')

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


def ts(title: str, queries: list[tuple[str, str]], unit: str = "short", w: int = 12, h: int = 8,
       desc: str = "") -> timeseries.Panel:
    p = timeseries.Panel().title(title).datasource(DS).unit(unit).span(w).height(h).fill_opacity(10)
    if desc:
        p = p.description(desc)
    return _targets(p, queries)


def timeline(title: str, queries: list[tuple[str, str]], mapping: dm.ValueMap | None = MODE_MAP,
             w: int = 12, h: int = 8, desc: str = "") -> statetimeline.Panel:
    p = statetimeline.Panel().title(title).datasource(DS).span(w).height(h).show_value(
        VisibilityMode.NEVER).merge_values(True)
    if mapping is not None:
        p = p.mappings([mapping])
    if desc:
        p = p.description(desc)
    return _targets(p, queries)


def tbl(title: str, expr: str, hide: list[str], w: int = 12, h: int = 8, desc: str = "") -> table.Panel:
    p = (table.Panel().title(title).datasource(DS).span(w).height(h)
         .with_target(q(expr, "", "A", instant=True))
         .with_transformation(dm.DataTransformerConfig(
             id_val="organize",
             options={"excludeByName": {name: True for name in ["Time", "Value", "__name__", *hide]}})))
    if desc:
        p = p.description(desc)
    return p


def stat_panel(title: str, expr: str, w: int = 6, h: int = 4, unit: str = "short") -> stat.Panel:
    return stat.Panel().title(title).datasource(DS).span(w).height(h).unit(unit).with_target(q(expr, ""))


def query_var(name: str, label: str, query: str, multi: bool = True) -> dash.QueryVariable:
    v = (dash.QueryVariable(name).label(label).datasource(DS)
         .query({"query": query, "refId": f"{name}-var"})
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def base(uid: str, title: str, desc: str, instance_multi: bool) -> dash.Dashboard:
    """A dashboard with the variables every lxcwatch dashboard has."""
    return (dash.Dashboard(title).uid(uid).description(desc).tags(TAGS).editable().refresh("30s")
            .time("now-6h", "now").timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .with_variable(dash.DatasourceVariable("datasource").label("Data source").type("prometheus"))
            .with_variable(query_var("job", "Job", "label_values(lxcwatch_build_info, job)"))
            .with_variable(query_var("replica_group", "Replica group",
                                     'label_values(lxcwatch_replica_info{job=~"$job"}, replica_group)'))
            .with_variable(query_var("instance", "Instance",
                                     'label_values(lxcwatch_build_info{job=~"$job"}, instance)',
                                     multi=instance_multi))
            .link(dash.DashboardLink("lxcwatch").type(dm.DashboardLinkType.DASHBOARDS).tags(TAGS)
                  .as_dropdown(True).include_vars(True).keep_time(True).icon("external link")))


def fleet() -> dash.Dashboard:
    d = base("lxcwatch-fleet", "lxcwatch / Fleet",
             "Receive mode of every host, replica group by replica group (members side by side).", True)
    d = (d.with_row(dash.Row("Overview"))
         .with_panel(ts("NAPI-heavy hosts per replica group", [(
             f'sum by (replica_group) (lxcwatch_host_napi_heavy{{job=~"$job"}} {JOIN_REPLICA})',
             "{{replica_group}}")], w=12))
         .with_panel(ts("Agents up", [('sum by (job) (up{job=~"$job"})', "{{job}}")], w=6))
         .with_panel(ts("Host mode changes", [(
             f'sum by (replica_group) (increase(lxcwatch_host_mode_changes_total{{job=~"$job"}}[{RI}]) '
             f'{JOIN_REPLICA})', "{{replica_group}}")], w=6)))
    d = (d.with_row(dash.Row("Replica group $replica_group").repeat("replica_group"))
         .with_panel(timeline("$replica_group: host mode per member", [(
             f'max by (replica) (lxcwatch_host_napi_heavy{{job=~"$job"}} {JOIN_REPLICA})',
             "{{replica}}")], w=24,
             desc="lxcwatch_host_napi_heavy of every member of the group, one lane per replica."))
         .with_panel(ts("$replica_group: NAPI-heavy NICs per member", [(
             f'sum by (replica) (lxcwatch_nic_napi_heavy{{job=~"$job"}} {JOIN_REPLICA})',
             "{{replica}}")], w=8))
         .with_panel(timeline("$replica_group: host reason per member", [(
             f'max by (replica, reason) (lxcwatch_host_napi_reason{{job=~"$job"}} {JOIN_REPLICA}) == 1',
             "{{replica}}: {{reason}}")], mapping=None, w=8,
             desc="The reason of each member's verdict (none, nic, softnet_pressure)."))
         .with_panel(tbl("$replica_group: NICs and reasons now",
                         f'max by (replica, instance, device, reason) (lxcwatch_nic_napi_reason{{job=~"$job"}} '
                         f'{JOIN_REPLICA}) == 1',
                         hide=[], w=8)))
    return d


def host() -> dash.Dashboard:
    d = base("lxcwatch-host", "lxcwatch / Host",
             "Receive path of one host: per NIC packets vs hard IRQs, softnet per CPU, NET_RX, bridges, drivers.",
             False)
    d = d.with_variable(query_var("device", "NIC",
                                  f'label_values(lxcwatch_nic_interrupts_total{{{SEL}}}, device)'))
    nic = f'{SEL}, device=~"$device"'
    d = (d.with_row(dash.Row("Verdict"))
         .with_panel(timeline("Host mode", [(f'lxcwatch_host_napi_heavy{{{SEL}}}', "{{instance}}")], w=8, h=5))
         .with_panel(timeline("Host reason", [(f'lxcwatch_host_napi_reason{{{SEL}}} == 1', "{{reason}}")],
                              mapping=None, w=8, h=5))
         .with_panel(timeline("NIC mode", [(f'lxcwatch_nic_napi_heavy{{{SEL}}}', "{{device}}")], w=8, h=5)))
    d = (d.with_row(dash.Row("NIC $device").repeat("device"))
         .with_panel(ts("$device: packets/s vs hard IRQs/s vs packets per IRQ", [
             (f'rate(lxcwatch_link_receive_packets_total{{{nic}}}[{RI}])', "packets/s"),
             (f'sum by (device) (rate(lxcwatch_nic_interrupts_total{{{nic}, vector=~"rx|txrx"}}[{RI}]))',
              "receive IRQs/s"),
             (f'lxcwatch_nic_packets_per_interrupt{{{nic}}}', "packets per IRQ"),
         ], w=12, desc="Packets per IRQ (right axis) climbs from a handful to hundreds when the NIC polls.")
             .with_override(dm.MatcherConfig(id_val="byName", options="packets per IRQ"),
                            [dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                             dm.DynamicConfigValue(id_val="unit", value="none")]))
         .with_panel(ts("$device: hard IRQs/s by vector", [(
             f'sum by (vector) (rate(lxcwatch_nic_interrupts_total{{{nic}}}[{RI}]))', "{{vector}}")], w=6))
         .with_panel(timeline("$device: reason", [(
             f'lxcwatch_nic_napi_reason{{{nic}}} == 1', "{{reason}}")], mapping=None, w=6)))
    d = (d.with_row(dash.Row("Softnet per CPU"))
         .with_panel(ts("Processed packets/s per CPU", [(
             f'rate(lxcwatch_softnet_processed_total{{{SEL}}}[{RI}])', "cpu {{cpu}}")], w=8))
         .with_panel(ts("Backlog drops/s per CPU", [(
             f'rate(lxcwatch_softnet_dropped_total{{{SEL}}}[{RI}])', "cpu {{cpu}}")], w=8))
         .with_panel(ts("Time squeezes/s per CPU", [(
             f'rate(lxcwatch_softnet_times_squeezed_total{{{SEL}}}[{RI}])', "cpu {{cpu}}")], w=8))
         .with_panel(ts("NET_RX softirqs/s per CPU", [(
             f'rate(lxcwatch_softirqs_total{{{SEL}, vector="NET_RX"}}[{RI}])', "cpu {{cpu}}")], w=8))
         .with_panel(ts("Softirq CPU share per CPU", [
             (f'rate(lxcwatch_cpu_softirq_seconds_total{{{SEL}}}[{RI}])', "softirq cpu {{cpu}}"),
             (f'rate(lxcwatch_ksoftirqd_cpu_seconds_total{{{SEL}}}[{RI}])', "ksoftirqd cpu {{cpu}}"),
         ], unit="percentunit", w=8))
         .with_panel(ts("NET_RX softirqs per hard IRQ", [(
             f'lxcwatch_nic_softirqs_per_interrupt{{{SEL}}}', "{{device}}")], w=8)))
    d = (d.with_row(dash.Row("Links and bridges"))
         .with_panel(timeline("Promiscuous links", [(
             f'lxcwatch_link_promiscuous{{{SEL}}}', "{{device}}")], mapping=BOOL_MAP, w=8))
         .with_panel(ts("Promiscuity (users of promiscuous mode)", [(
             f'lxcwatch_link_promiscuity{{{SEL}}}', "{{device}}")], w=8))
         .with_panel(ts("Bridge port drops/s", [
             (f'sum by (master, device) (rate(lxcwatch_link_receive_dropped_total{{{SEL}}}[{RI}]) '
              f'* on (job, instance, device) group_left (master) lxcwatch_link_info{{{SEL}, master!=""}})',
              "{{master}}/{{device}} rx"),
             (f'sum by (master, device) (rate(lxcwatch_link_transmit_dropped_total{{{SEL}}}[{RI}]) '
              f'* on (job, instance, device) group_left (master) lxcwatch_link_info{{{SEL}, master!=""}})',
              "{{master}}/{{device}} tx"),
         ], w=8, desc="Drops of links that are ports of a bridge or bond (master from lxcwatch_link_info)."))
         .with_panel(tbl("Drivers", f'lxcwatch_link_info{{{SEL}, driver!=""}}',
                         hide=["job", "instance"], w=24)))
    return d


def containers() -> dash.Dashboard:
    d = base("lxcwatch-containers", "lxcwatch / Containers",
             "LXC containers of a host: state, resources, veths on their bridges, probes.", False)
    d = d.with_variable(query_var("container", "Container",
                                  f'label_values(lxcwatch_container_info{{{SEL}}}, container)'))
    c = f'{SEL}, container=~"$container"'
    d = (d.with_row(dash.Row("State"))
         .with_panel(stat_panel("Running", f'sum(lxcwatch_container_running{{{c}}})'))
         .with_panel(stat_panel("Stopped", f'count(lxcwatch_container_running{{{c}}} == 0)'))
         .with_panel(stat_panel("Autostart but stopped",
                                f'count(lxcwatch_container_autostart{{{c}}} == 1 and on (job, instance, container) '
                                f'lxcwatch_container_running{{{c}}} == 0)'))
         .with_panel(stat_panel("Read failures", f'count(lxcwatch_container_read_success{{{c}}} == 0)'))
         .with_panel(timeline("Running", [(f'lxcwatch_container_running{{{c}}}', "{{container}}")],
                              mapping=dm.ValueMap(options={
                                  "0": dm.ValueMappingResult(text="stopped", color="red", index=0),
                                  "1": dm.ValueMappingResult(text="running", color="green", index=1)}), w=12))
         .with_panel(tbl("State now", f'lxcwatch_container_state{{{c}}} == 1', hide=["job", "instance"], w=12)))
    d = (d.with_row(dash.Row("Resources"))
         .with_panel(ts("CPU", [(f'rate(lxcwatch_container_cpu_seconds_total{{{c}}}[{RI}])', "{{container}}")],
                        unit="percentunit", w=8))
         .with_panel(ts("Memory vs limit", [
             (f'lxcwatch_container_memory_bytes{{{c}}}', "{{container}}"),
             (f'lxcwatch_container_memory_limit_bytes{{{c}}}', "{{container}} limit"),
         ], unit="bytes", w=8))
         .with_panel(ts("Memory share of limit", [(
             f'lxcwatch_container_memory_bytes{{{c}}} / lxcwatch_container_memory_limit_bytes{{{c}}}',
             "{{container}}")], unit="percentunit", w=8))
         .with_panel(ts("Processes", [(f'lxcwatch_container_processes{{{c}}}', "{{container}}")], w=8))
         .with_panel(ts("OOM kills", [(
             f'increase(lxcwatch_container_oom_kills_total{{{c}}}[{RI}])', "{{container}}")], w=8))
         .with_panel(ts("Received packets/s", [(
             f'rate(lxcwatch_container_receive_packets_total{{{c}}}[{RI}])', "{{container}} {{interface}}")],
             w=8)))
    d = (d.with_row(dash.Row("Network and probes"))
         .with_panel(timeline("veth attached to its bridge", [(
             f'lxcwatch_container_veth_attached{{{c}}}', "{{container}} {{interface}} → {{bridge}}")],
             mapping=dm.ValueMap(options={
                 "0": dm.ValueMappingResult(text="detached", color="red", index=0),
                 "1": dm.ValueMappingResult(text="attached", color="green", index=1)}), w=12))
         .with_panel(timeline("veth up", [(f'lxcwatch_container_veth_up{{{c}}}', "{{container}} {{interface}}")],
                              mapping=OK_MAP, w=12))
         .with_panel(timeline("Probes", [(
             f'lxcwatch_container_probe_success{{{c}}}', "{{container}} {{probe}}")], mapping=OK_MAP, w=12))
         .with_panel(ts("Probe duration", [(
             f'lxcwatch_container_probe_duration_seconds{{{c}}}', "{{container}} {{probe}}")], unit="s", w=12)))
    return d


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (sorted keys, indent 2, trailing newline)."""
    out = {}
    for build in (fleet, host, containers):
        model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
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
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
