"""The listening sockets: bound to --web.listen-address, or passed by systemd (--web.systemd-socket)."""

import errno
import os
import socket

import systemd.daemon

from lxcwatch.errors import RuntimeFailure
from lxcwatch.export.http_server import BACKLOG


def systemd_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed to this process ($LISTEN_PID, $LISTEN_FDS; sd_listen_fds(3))."""
    fds = systemd.daemon.listen_fds()  # and unsets the variables, which a child must not take for its own
    if not fds:
        raise RuntimeFailure("--web.systemd-socket: systemd passed no socket (no $LISTEN_FDS for this process); "
                             "start lxcwatch.socket, or listen with --web.listen-address")
    sockets = []
    for fd in fds:
        try:
            s = socket.socket(fileno=fd)
            listening = s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM and \
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = False
        if not listening:
            raise RuntimeFailure(f"--web.systemd-socket: descriptor {fd} from systemd is not a listening TCP socket "
                                 "(want ListenStream=PORT or ADDRESS:PORT in the .socket unit)")
        sockets.append(s)
    return sockets


def address_of(s: socket.socket) -> str:
    """Where `s` listens, as --web.listen-address spells it."""
    host, port = s.getsockname()[:2]
    return f"[{host}]:{port}" if s.family == socket.AF_INET6 else f"{host}:{port}"


def parse_address(address: str) -> tuple[str, int]:
    """"host:port", ":port" (all addresses) or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {address!r}: want host:port or :port")
    return host.strip("[]"), int(port)


def bind(address: str) -> socket.socket:
    """A listening socket; ":port" listens on IPv6 and IPv4 alike, as node_exporter does."""
    host, port = parse_address(address)
    try:
        if host == "":
            if socket.has_dualstack_ipv6():
                try:
                    return socket.create_server(("::", port), family=socket.AF_INET6, backlog=BACKLOG,
                                                dualstack_ipv6=True)
                except OSError as e:
                    if e.errno not in (socket.EAI_FAMILY, errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        raise
            return socket.create_server(("0.0.0.0", port), backlog=BACKLOG)  # IPv6 is unavailable
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=BACKLOG)
    except OSError as e:
        raise RuntimeFailure(f"listen tcp {address}: {os.strerror(e.errno) if e.errno else e}") from None
