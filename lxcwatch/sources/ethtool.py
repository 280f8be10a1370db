"""SIOCETHTOOL ioctls, no capability needed: ETHTOOL_GDRVINFO (`ethtool -i`) and ETHTOOL_GCOALESCE (`ethtool -c`)."""

import ctypes
import fcntl
import os
import socket
import struct

from lxcwatch.kernel.ethtool_coalesce import Coalesce
from lxcwatch.kernel.link import Driver

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
ETHTOOL_GCOALESCE = 0x0000000E
# struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32], erom_version[32],
# reserved2[12], then five u32 counts.
_DRVINFO = struct.Struct("=I32s32s32s32s32s12s5I")
# struct ethtool_coalesce (include/uapi/linux/ethtool.h): 23 u32, cmd first; rx_coalesce_usecs,
# rx_max_coalesced_frames at 1 and 2, use_adaptive_rx_coalesce at 10.
_COALESCE = struct.Struct("=23I")




def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _ask(sock: socket.socket, ifname: str, request: bytes) -> bytes | None:
    """One SIOCETHTOOL request; None when the interface has no such ethtool op (EOPNOTSUPP) or is gone."""
    buf = ctypes.create_string_buffer(request)
    ifreq = struct.pack("16sP", os.fsencode(ifname)[:15], ctypes.addressof(buf))  # the kernel's bytes back
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    return buf.raw[: len(request)]


def drvinfo(sock: socket.socket, ifname: str) -> Driver | None:
    raw = _ask(sock, ifname, _DRVINFO.pack(ETHTOOL_GDRVINFO, *([b""] * 6), 0, 0, 0, 0, 0))
    if raw is None:
        return None
    _, driver, version, fw, bus, *_ = _DRVINFO.unpack(raw)
    return Driver(_text(driver), _text(version), _text(fw), _text(bus))


def coalesce(sock: socket.socket, ifname: str) -> Coalesce | None:
    """RX interrupt coalescing as `ethtool -c` shows it; None when the driver has no get_coalesce."""
    raw = _ask(sock, ifname, _COALESCE.pack(ETHTOOL_GCOALESCE, *([0] * 22)))
    if raw is None:
        return None
    values = _COALESCE.unpack(raw)
    return Coalesce(rx_usecs=values[1], rx_frames=values[2], adaptive_rx=values[10] != 0)
