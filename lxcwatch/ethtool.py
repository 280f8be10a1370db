"""ETHTOOL_GDRVINFO ioctl (what `ethtool -i` shows): driver, version, firmware, bus address. No capability needed."""

import ctypes
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
# struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32], erom_version[32],
# reserved2[12], then five u32 counts.
_DRVINFO = struct.Struct("=I32s32s32s32s32s12s5I")


@dataclass(frozen=True, slots=True)
class Driver:
    driver: str = ""
    version: str = ""
    firmware: str = ""
    bus_info: str = ""


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def drvinfo(sock: socket.socket, ifname: str) -> Driver | None:
    """Ask the live kernel; None when the interface has no ethtool ops or is gone."""
    buf = ctypes.create_string_buffer(_DRVINFO.pack(ETHTOOL_GDRVINFO, *([b""] * 6), 0, 0, 0, 0, 0))
    ifreq = struct.pack("16sP", os.fsencode(ifname)[:15], ctypes.addressof(buf))  # the kernel's bytes back
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    _, driver, version, fw, bus, *_ = _DRVINFO.unpack(buf.raw[: _DRVINFO.size])
    return Driver(_text(driver), _text(version), _text(fw), _text(bus))
