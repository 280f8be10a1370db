"""Container health probes, as declared (pure parsing), one per line, either in the file given by --probes.file:

    CONTAINER PROBE tcp HOST:PORT [TIMEOUT]

or in the container's LXC config as a comment, which LXC itself ignores:

    # lxcwatch.probe = PROBE tcp HOST:PORT [TIMEOUT]
"""

import re
from dataclasses import dataclass

from lxcwatch.core.duration import duration
from lxcwatch.errors import ParseError, UsageError

DEFAULT_TIMEOUT = 1.0
# Linux itself gives up a connect after ~127 s (tcp_syn_retries=6); its SYN retransmissions are 1, 3, 7, 15 and
# 31 s after the first, so a minute already covers five retransmissions. A longer timeout tells nothing more.
MAX_TIMEOUT = 60.0
KINDS = ("tcp",)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CONFIG_LINE = re.compile(r"\s*#\s*lxcwatch\.probe\s*=\s*(.*)")


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    container: str
    name: str
    kind: str  # "tcp": connect() succeeds within the timeout
    host: str  # an IP address or a name (resolved on the probe thread)
    port: int
    timeout: float  # seconds

    @property
    def key(self) -> tuple[str, str]:
        return self.container, self.name


@dataclass(frozen=True, slots=True)
class ProbeResult:
    container: str
    name: str
    success: bool
    duration_seconds: float  # until connected, refused, or the timeout
    timestamp: float  # wall clock when the attempt started
    error: str = ""


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, with IPv6 addresses in brackets ([::1]:80)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: want [IPV6]:PORT")
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host or ":" in host:
            raise ValueError(f"bad address {text!r}: want HOST:PORT (IPv6 in brackets)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}: want 1-65535")
    return host, int(port)


def parse_spec(container: str, fields: list[str]) -> ProbeSpec:
    """PROBE tcp HOST:PORT [TIMEOUT] -> ProbeSpec; ValueError with the reason."""
    if not 3 <= len(fields) <= 4:
        raise ValueError(f"expected PROBE tcp HOST:PORT [TIMEOUT], found {len(fields)} fields")
    name, kind, address = fields[:3]
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad probe name {name!r}: letters, digits, '_', '.', '-' only")
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r}: want {', '.join(KINDS)}")
    host, port = parse_address(address)
    timeout = DEFAULT_TIMEOUT
    if len(fields) == 4:
        try:
            timeout = duration(fields[3])
        except UsageError as e:
            raise ValueError(str(e)) from None
        if timeout > MAX_TIMEOUT:
            raise ValueError(f"timeout {fields[3]} is longer than the maximum {MAX_TIMEOUT:g}s")
    return ProbeSpec(container, name, kind, host, port, timeout)


def parse_file(text: str, source: str) -> tuple[ProbeSpec, ...]:
    """The --probes.file format: CONTAINER PROBE tcp HOST:PORT [TIMEOUT]; '#' comments, blank lines."""
    specs: dict[tuple[str, str], ProbeSpec] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            spec = parse_spec(fields[0], fields[1:])
        except ValueError as e:
            raise ParseError(source, str(e), number) from None
        if spec.key in specs:
            raise ParseError(source, f"probe {spec.name!r} of {spec.container!r} declared twice", number)
        specs[spec.key] = spec
    return tuple(specs.values())


def parse_config_line(container: str, line: str) -> ProbeSpec | None:
    """A `# lxcwatch.probe = ...` comment of an LXC config, None for any other line; ValueError if malformed."""
    m = _CONFIG_LINE.fullmatch(line)
    return parse_spec(container, m.group(1).split()) if m else None
