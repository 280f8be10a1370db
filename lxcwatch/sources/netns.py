"""The veth peers of another network namespace's interfaces, asked of rtnetlink from the host namespace.

RTM_GETNSID with the namespace's fd (/proc/PID/ns/net) gives the id the host knows it by; an RTM_GETLINK
dump with IFLA_TARGET_NETNSID (4.20+) then lists that namespace's links without entering it, and for a
veth IFLA_LINK is its peer's ifindex on the other side. The kernel assigns the id when a veth pair spans
the two namespaces; with none assigned (-1) this answers nothing and the caller falls back to the
container's own sysfs. Messages are packed by hand: two requests, a handful of attributes."""

import os
import socket
import struct

RTM_NEWLINK, RTM_GETLINK, RTM_NEWNSID, RTM_GETNSID = 16, 18, 88, 90
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NETNSA_NSID, NETNSA_FD = 1, 3
IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID, IFLA_TARGET_NETNSID = 3, 5, 18, 37, 46
IFLA_INFO_KIND = 1
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg
TIMEOUT = 1.0


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4: offset + length]  # without NLA_F_NESTED / NET_BYTEORDER
        offset += (length + 3) & ~3
    return out


def _messages(sock: socket.socket, seq: int):
    """(type, payload) of every reply to request `seq` until NLMSG_DONE, or the single reply of a non-dump."""
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, _, msg_seq, _ = _HDR.unpack_from(data, offset)
            payload = data[offset + _HDR.size: offset + length]
            offset += (length + 3) & ~3
            if msg_seq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                code = struct.unpack_from("=i", payload)[0]
                if code:
                    raise OSError(-code, os.strerror(-code))
                return
            yield kind, payload


def _request(sock: socket.socket, kind: int, flags: int, seq: int, body: bytes) -> None:
    sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)


def nsid_of(sock: socket.socket, ns_fd: int) -> int:
    """The id of the namespace behind `ns_fd` as the caller's namespace knows it; -1 when none is assigned."""
    _request(sock, RTM_GETNSID, 0, 1, struct.pack("=Bxxx", socket.AF_UNSPEC) + _attr(NETNSA_FD, struct.pack("=I", ns_fd)))
    for kind, payload in _messages(sock, 1):
        if kind == RTM_NEWNSID:
            value = _attrs(payload, 4, len(payload)).get(NETNSA_NSID)
            return struct.unpack("=i", value)[0] if value else -1
    return -1


def veth_peers(ns_path: str) -> dict[str, tuple[int, int]]:
    """{interface in the namespace at ns_path: (its ifindex there, its veth peer's ifindex here)}.
    Empty when the namespace has no id here; OSError when it cannot be asked."""
    ns_fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(TIMEOUT)
            sock.bind((0, 0))
            nsid = nsid_of(sock, ns_fd)
            if nsid < 0:
                return {}
            body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_TARGET_NETNSID, struct.pack("=i", nsid))
            _request(sock, RTM_GETLINK, NLM_F_DUMP, 2, body)
            peers = {}
            for kind, payload in _messages(sock, 2):
                if kind != RTM_NEWLINK:
                    continue
                index = _IFINFO.unpack_from(payload)[2]
                attrs = _attrs(payload, _IFINFO.size, len(payload))
                info = attrs.get(IFLA_LINKINFO)
                kind_name = _attrs(info, 0, len(info)).get(IFLA_INFO_KIND, b"") if info else b""
                if kind_name.rstrip(b"\0") != b"veth" or IFLA_LINK not in attrs or IFLA_LINK_NETNSID not in attrs:
                    continue
                name = attrs[IFLA_IFNAME].rstrip(b"\0").decode("utf-8", "replace")
                peers[name] = (index, struct.unpack("=i", attrs[IFLA_LINK])[0])
            return peers
    finally:
        os.close(ns_fd)
