"""Debian's real Prometheus, Alertmanager and promtool/amtool against the shipped rules and the agent."""
