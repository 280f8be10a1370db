"""systemd's service protocol: READY, STATUS, WATCHDOG, RELOADING and STOPPING over $NOTIFY_SOCKET."""

import logging
import os
import socket

from lxcwatch.core.classifier import Verdict
from lxcwatch.core.snapshot import Snapshot
from lxcwatch.export.status import status_line

log = logging.getLogger("lxcwatch")


def watchdog_interval(env: dict[str, str]) -> float | None:
    """Seconds systemd waits for a WATCHDOG=1, or None when this process is not watched."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class Notifier:
    """Tells systemd what the agent does; every call is a no-op outside a Type=notify service."""

    def __init__(self, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.enabled = path.startswith(("/", "@"))
        self.watchdog = watchdog_interval(env) if self.enabled else None
        self._status = ""
        self._address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if self.enabled else None
        self._failing = False

    def _send(self, message: str) -> None:
        """One datagram, never waiting: systemd-python's notify() sends with the GIL held and blocks while the
        socket's queue (10 datagrams) is full, which froze every thread of the agent, scrapes included. A full
        queue now costs this message, logged once until a send succeeds again."""
        if not self.enabled:
            return
        try:
            self._socket.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)
        except OSError as e:
            if not self._failing:
                log.warning("sd_notify failed", extra={"message": message.replace("\n", " "), "err": str(e)})
            self._failing = True
        else:
            self._failing = False

    def check_interval(self, sample_interval: float) -> None:
        # systemd's advice: ping at least twice per watchdog period.
        if self.watchdog is not None and sample_interval * 2 > self.watchdog:
            log.warning("sample interval too long for the watchdog",
                        extra={"interval": sample_interval, "watchdog_sec": self.watchdog})

    def ready(self, snap: Snapshot, verdict: Verdict) -> None:
        self._status = status_line(snap, verdict)
        self._send(f"READY=1\nSTATUS={self._status}\nMAINPID={os.getpid()}")

    def sampled(self, snap: Snapshot, verdict: Verdict) -> None:
        """After every completed sample, from the sampling loop: a loop that hangs stops the pings."""
        status = status_line(snap, verdict)
        message = "WATCHDOG=1" if self.watchdog is not None else ""
        if status != self._status:
            self._status = status
            message += f"\nSTATUS={status}"
        if message:
            self._send(message.strip())

    def reloading(self) -> None:
        self._send("RELOADING=1\nSTATUS=reloading configuration")

    def reloaded(self) -> None:
        self._send(f"READY=1\nSTATUS={self._status}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")
