"""Every panel query of the generated dashboards, with template variables filled in, for running against Prometheus."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"


def dashboards() -> list[dict]:
    """The generated dashboard models, in file name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))]


def walk_panels(panels: list[dict]):
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace $name, ${name} and ${name:fmt} with values[name]; unknown variables are left alone."""
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, text)


def values_of(instance: str, job: str, replica_group: str, datasource: str, rate_interval: str,
              extra: dict[str, str]) -> dict[str, str]:
    return {"instance": instance, "job": job, "replica_group": replica_group, "datasource": datasource,
            "cluster": ".*", "device": ".*", "container": ".*", "__rate_interval": rate_interval, **extra}


def variable_queries(job: str = ".*", replica_group: str = ".*", **extra: str) -> list[tuple[str, str, str]]:
    """(dashboard uid, variable name, PromQL) of every query_result() variable, variables substituted."""
    values = values_of(".*", job, replica_group, "prometheus", "1m", extra)
    out = []
    for d in dashboards():
        for v in d["templating"]["list"]:
            m = re.fullmatch(r"query_result\((.*)\)", (v.get("query") or {}).get("query", "") if isinstance(
                v.get("query"), dict) else "", re.S)
            if m:
                out.append((d["uid"], v["name"], substitute(m.group(1), values)))
    return out


def panel_queries(instance: str = ".*", job: str = ".*", replica_group: str = ".*",
                  datasource: str = "prometheus", rate_interval: str = "1m",
                  **extra: str) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every panel target, variables substituted.

    Every selector uses =~, so a regex (the default ".*", like Grafana's "All") or one value works. Other
    dashboard variables (cluster, device, container) default to ".*" and can be given as keyword arguments;
    $__rate_interval becomes rate_interval.
    """
    values = values_of(instance, job, replica_group, datasource, rate_interval, extra)
    out = []
    for d in dashboards():
        for panel in walk_panels(d.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((d["uid"], substitute(panel.get("title", ""), values),
                                substitute(target["expr"], values)))
    return out
