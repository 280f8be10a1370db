"""Parser for an LXC container's config file (lxc.container.conf(5)), for the keys lxcwatch uses.

`key = value` lines, '#' comments, values optionally in matching quotes (LXC 3.0+ strips them). A line
with no '=' is an error, as it is for LXC ("Invalid configuration line"). Keys lxcwatch does not use are
skipped unchecked; `lxc.include` is not followed (networks and autostart live in the container's own file
in every template LXC ships)."""

from dataclasses import dataclass, replace

from lxcwatch.core.probe_spec import ProbeSpec, parse_config_line
from lxcwatch.errors import ParseError

NET_KEYS = {"type": "type", "link": "link", "name": "name", "veth.pair": "veth_pair"}


@dataclass(frozen=True, slots=True)
class Network:
    """One `lxc.net.N.*` block."""

    index: int  # N
    type: str = ""  # veth, macvlan, phys, vlan, none, empty
    link: str = ""  # veth: the bridge its host end is attached to ("" = none)
    name: str = ""  # the interface name inside the container ("" = the kernel picks ethN)
    veth_pair: str = ""  # veth: the host end's name ("" = LXC generates vethXXXXXX)


@dataclass(frozen=True, slots=True)
class LxcConfig:
    autostart: bool = False  # lxc.start.auto
    networks: tuple[Network, ...] = ()  # by index
    probes: tuple[ProbeSpec, ...] = ()  # `# lxcwatch.probe = ...` comment lines

    def veth_names(self) -> dict[str, Network]:
        """{container-side interface name: veth network}. Unnamed veths get eth0, eth1, ... in index order,
        skipping names taken by named ones: the kernel's lowest free "eth%d", which LXC asks for."""
        veths = [n for n in self.networks if n.type == "veth"]
        names = {n.name: n for n in veths if n.name}
        k = 0
        for net in veths:
            if not net.name:
                while f"eth{k}" in names:
                    k += 1
                names[f"eth{k}"] = net
        return names


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse(text: str, container: str, source: str = "config") -> LxcConfig:
    autostart = False
    nets: dict[int, Network] = {}
    probes: dict[str, ProbeSpec] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if "\0" in line:  # its values become paths and link names
            raise ParseError(source, "NUL byte", number)
        if line.startswith("#"):
            try:
                spec = parse_config_line(container, line)
            except ValueError as e:
                raise ParseError(source, f"lxcwatch.probe: {e}", number) from None
            if spec is not None:
                if spec.name in probes:
                    raise ParseError(source, f"lxcwatch.probe {spec.name!r} declared twice", number)
                probes[spec.name] = spec
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise ParseError(source, f"invalid configuration line {line[:60]!r}: no '='", number)
        key, value = key.strip(), _unquote(value.strip())
        if key == "lxc.start.auto":
            if value not in ("0", "1"):
                raise ParseError(source, f"lxc.start.auto must be 0 or 1, not {value!r}", number)
            autostart = value == "1"
        elif key == "lxc.net" and not value:
            nets.clear()  # an empty lxc.net clears every network defined so far
        elif key.startswith("lxc.net."):
            index, _, sub = key[len("lxc.net."):].partition(".")
            if not (index.isascii() and index.isdigit()):  # str.isdigit() accepts "\u00b2", int() does not
                raise ParseError(source, f"{key}: the network index must be a number", number)
            net = nets.setdefault(int(index), Network(int(index)))
            if sub in NET_KEYS:
                nets[int(index)] = replace(net, **{NET_KEYS[sub]: value})
    return LxcConfig(autostart, tuple(nets[i] for i in sorted(nets)), tuple(probes.values()))
