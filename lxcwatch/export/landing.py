"""The HTML landing page at /: version, replica and a link to the metrics."""

import html

from lxcwatch.export.metrics import Agent

LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lxcwatch</title></head>
<body><h1>lxcwatch</h1>
<p>Receive-path monitor for LXC hosts: hard interrupts against NAPI polling, per NIC.</p>
<p>Version {version}; replica {replica} of group {group}.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


def page(agent: Agent, telemetry_path: str) -> bytes:
    return LANDING.format(version=html.escape(agent.version), replica=html.escape(agent.replica),
                          group=html.escape(agent.replica_group or "(none)"), path=html.escape(telemetry_path)).encode()
