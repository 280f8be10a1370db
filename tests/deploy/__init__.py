"""Deployment: the systemd unit, the Ansible role, systemd hosts in LXC."""
