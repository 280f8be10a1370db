"""Table-driven tests of the pure LXC-side parsers: container configs, cgroup files, monitor and init /proc
files, probe declarations. Expected values are written by hand from the kernel and LXC formats."""

import pytest

from lxcwatch.core import probe_spec
from lxcwatch.kernel import cgroup as cgroups
from lxcwatch.sources import cgroup_fs
from lxcwatch.core import lxc_config
from lxcwatch.kernel import lxc_monitor, net_dev, pid_stat
from lxcwatch.kernel.cgroup import Layout, Mount
from lxcwatch.errors import ParseError
from lxcwatch.core.lxc_config import Network
from lxcwatch.core.probe_spec import ProbeSpec

# ---------------------------------------------------------------- lxc_config

BUSYBOX = """# Template used to create this container: /usr/share/lxc/templates/lxc-busybox
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs
lxc.uts.name = "web"
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
"""


@pytest.mark.parametrize("text, autostart, networks, eth", [
    pytest.param(BUSYBOX, False, (Network(0, "veth", "lxcbr0"),), {"eth0": 0}, id="busybox-template"),
    pytest.param("lxc.start.auto = 1\nlxc.net.0.type = veth\nlxc.net.0.veth.pair = vethweb\n"
                 "lxc.net.0.link = 'br0'\n", True, (Network(0, "veth", "br0", "", "vethweb"),), {"eth0": 0},
                 id="quoted-link-and-pair"),
    pytest.param("lxc.net.0.type = veth\nlxc.net.0.name = mgmt\nlxc.net.1.type = veth\nlxc.net.2.type = macvlan\n"
                 "lxc.net.3.type = veth\n", False,
                 (Network(0, "veth", "", "mgmt"), Network(1, "veth"), Network(2, "macvlan"), Network(3, "veth")),
                 {"mgmt": 0, "eth0": 1, "eth1": 3}, id="unnamed-veths-get-eth0-eth1"),
    pytest.param("lxc.net.1.type = veth\nlxc.net.0.type = veth\nlxc.net.0.name = eth0\n", False,
                 (Network(0, "veth", "", "eth0"), Network(1, "veth")), {"eth0": 0, "eth1": 1},
                 id="index-order-and-taken-name"),
    pytest.param("lxc.net.0.type = veth\nlxc.net =\nlxc.net.1.type = veth\n", False, (Network(1, "veth"),),
                 {"eth0": 1}, id="empty-lxc.net-clears"),
    pytest.param("  # comment\n\nlxc.start.auto=0\nlxc.include = /usr/share/lxc/config/common.conf\n", False, (), {},
                 id="no-spaces-include-ignored"),
])
def test_config(text, autostart, networks, eth):
    config = lxc_config.parse(text, "web")
    assert config.autostart is autostart
    assert config.networks == networks
    assert {name: net.index for name, net in config.veth_names().items()} == eth


def test_config_probe_comments():
    config = lxc_config.parse(BUSYBOX + "# lxcwatch.probe = ssh tcp 10.0.3.5:22 2s\n#lxcwatch.probe=web tcp [fd00::5]:80\n",
                              "web")
    assert config.probes == (ProbeSpec("web", "ssh", "tcp", "10.0.3.5", 22, 2.0),
                             ProbeSpec("web", "web", "tcp", "fd00::5", 80, probe_spec.DEFAULT_TIMEOUT))


@pytest.mark.parametrize("text, message", [
    pytest.param("lxc.cap.drop sys_module\n", "config:1: invalid configuration line 'lxc.cap.drop sys_module': no '='",
                 id="no-equals"),
    pytest.param("lxc.start.auto = yes\n", "config:1: lxc.start.auto must be 0 or 1, not 'yes'", id="auto-not-bool"),
    pytest.param("\nlxc.net.first.type = veth\n", "config:2: lxc.net.first.type: the network index must be a number",
                 id="net-index"),
    pytest.param("# lxcwatch.probe = ssh udp 10.0.0.1:53\n", "config:1: lxcwatch.probe: unknown probe kind 'udp'",
                 id="probe-kind"),
    pytest.param("# lxcwatch.probe = a tcp h:1\n# lxcwatch.probe = a tcp h:2\n", "config:2: lxcwatch.probe 'a' declared twice",
                 id="probe-twice"),
])
def test_broken_config(text, message):
    with pytest.raises(ParseError) as e:
        lxc_config.parse(text, "web")
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------- probes

@pytest.mark.parametrize("address, expected", [
    ("10.0.3.5:22", ("10.0.3.5", 22)), ("[::1]:8080", ("::1", 8080)), ("db.lan:5432", ("db.lan", 5432)),
])
def test_probe_address(address, expected):
    assert probe_spec.parse_address(address) == expected


@pytest.mark.parametrize("address", ["10.0.3.5", "::1:80", "[::1]80", "h:0", "h:65536", "h:http", ":80"])
def test_bad_probe_address(address):
    with pytest.raises(ValueError):
        probe_spec.parse_address(address)


def test_probe_file():
    text = "# container probe kind address timeout\nweb http tcp 10.0.3.5:80 500ms  # front\n\ndb pg tcp 10.0.3.6:5432\n"
    assert probe_spec.parse_file(text, "probes") == (ProbeSpec("web", "http", "tcp", "10.0.3.5", 80, 0.5),
                                                 ProbeSpec("db", "pg", "tcp", "10.0.3.6", 5432, 1.0))


@pytest.mark.parametrize("text, message", [
    ("web http tcp\n", "probes:1: expected PROBE tcp HOST:PORT [TIMEOUT], found 2 fields"),
    ("web http tcp 10.0.3.5:80 soon\n", "probes:1: invalid duration 'soon'"),
    ("web h/ttp tcp 10.0.3.5:80\n", "probes:1: bad probe name 'h/ttp'"),
    ("web a tcp h:1\n\nweb a tcp h:2\n", "probes:3: probe 'a' of 'web' declared twice"),
])
def test_broken_probe_file(text, message):
    with pytest.raises(ParseError) as e:
        probe_spec.parse_file(text, "probes")
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------- cgroups

HYBRID = """31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw,nsdelegate
"""
V2 = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
V1_NAMESPACED = ("50 40 0:41 /lxc.payload.c1 /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
                 "51 40 0:42 /my\\040dir /mnt/cg rw - cgroup cgroup rw,pids,clone_children\n")


def test_mountinfo_hybrid():
    mounts = cgroups.parse_mountinfo(HYBRID)
    assert mounts == (
        Mount("/sys/fs/cgroup/cpu,cpuacct", "/", 1, frozenset({"cpu", "cpuacct"})),
        Mount("/sys/fs/cgroup/memory", "/", 1, frozenset({"memory"})),
        Mount("/sys/fs/cgroup/systemd", "/", 1, frozenset({"name=systemd"})),
        Mount("/sys/fs/cgroup/unified", "/", 2, frozenset()),
    )
    layout = Layout.of(mounts)
    assert layout.kind == "hybrid"
    assert layout.listing() == ("", mounts[3])  # cgroup2 lists the monitors
    assert layout.mount_of("cpuacct") == ("cpuacct", mounts[0])
    assert layout.mount_of("pids") == ("", mounts[3])  # no v1 pids hierarchy: cgroup2's


def test_mountinfo_v2_and_v1():
    assert Layout.of(cgroups.parse_mountinfo(V2)).kind == "v2"
    mounts = cgroups.parse_mountinfo(V1_NAMESPACED)
    assert mounts == (Mount("/sys/fs/cgroup/freezer", "/lxc.payload.c1", 1, frozenset({"freezer"})),
                      Mount("/mnt/cg", "/my dir", 1, frozenset({"pids"})))
    layout = Layout.of(mounts)
    assert layout.kind == "v1" and layout.listing() == ("freezer", mounts[0])
    assert cgroups.relative(mounts[0], "/lxc.payload.c1/sub") == "sub"
    assert cgroups.relative(mounts[0], "/lxc.payload.c1") == ""
    assert cgroups.relative(mounts[0], "/lxc.payload.c10") is None  # not below the mount's root
    assert Layout.of(()).kind == "none" and Layout.of(()).listing() is None


def test_mountinfo_broken():
    with pytest.raises(ParseError, match="self/mountinfo:1"):
        cgroups.parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw - tmpfs\n")


def test_proc_cgroup():
    text = "12:pids:/lxc.payload.web\n2:cpu,cpuacct:/lxc.payload.web\n1:name=systemd:/lxc.payload.web/init.scope\n0::/lxc.payload.web\n"
    assert cgroups.parse_proc_cgroup(text) == {"pids": "/lxc.payload.web", "cpu": "/lxc.payload.web",
                                               "cpuacct": "/lxc.payload.web", "name=systemd": "/lxc.payload.web/init.scope",
                                               "": "/lxc.payload.web"}
    with pytest.raises(ParseError, match="PID/cgroup:1"):
        cgroups.parse_proc_cgroup("pids /lxc\n")


@pytest.mark.parametrize("path, pruned", [("/init.scope", "/"), ("/system.slice/init.scope", "/system.slice"), ("/", "/"),
                                          ("/user.slice", "/user.slice")])
def test_prune_init_scope(path, pruned):
    assert cgroups.prune_init_scope(path) == pruned


def test_controller_files():
    assert cgroups.parse_freezer_state("FREEZING\n") == "FREEZING"
    with pytest.raises(ParseError, match="freezer.state: expected THAWED, FREEZING or FROZEN, found 'frozen'"):
        cgroups.parse_freezer_state("frozen")
    files = {name: parse for entries in cgroups.CONTROLLER_FILES.values() for name, _, parse in entries}
    assert files["memory.events"]("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0") == 2
    assert files["memory.oom_control"]("oom_kill_disable 0\nunder_oom 0") is None  # before 4.13
    assert files["cgroup.events"]("populated 1\nfrozen 1") == "FROZEN"
    assert files["cgroup.events"]("populated 1") == "THAWED"  # before 5.2: no cgroup2 freezer
    assert files["cpu.stat"]("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000") == 2.5
    assert files["memory.max"]("max") is None and files["memory.max"]("268435456") == 268435456
    for name, text in (("memory.events", "oom_kill lots"), ("cpu.stat", "usage_usec 12 34"), ("pids.current", "max")):
        with pytest.raises(ValueError):
            files[name](text)


V1_FILES = {"freezer.state": "FROZEN", "cpuacct.usage": "2500000000", "memory.usage_in_bytes": "1048576",
            "memory.limit_in_bytes": "9223372036854771712", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3",
            "pids.current": "4"}
V2_FILES = {"cgroup.events": "populated 1\nfrozen 0", "cpu.stat": "usage_usec 2500000\nuser_usec 1\nsystem_usec 2",
            "memory.current": "1048576", "memory.max": "max", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
            "pids.current": "4"}


def cgroup_dir(tmp_path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    return str(tmp_path)


@pytest.mark.parametrize("version, files, usage", [
    pytest.param(1, V1_FILES, cgroups.CgroupUsage("FROZEN", 2.5, 1048576, None, 3, 4), id="v1-no-limit"),
    pytest.param(1, {**V1_FILES, "memory.limit_in_bytes": "268435456"}, cgroups.CgroupUsage("FROZEN", 2.5, 1048576, 268435456, 3, 4),
                 id="v1-limit"),
    pytest.param(2, V2_FILES, cgroups.CgroupUsage("THAWED", 2.5, 1048576, None, 0, 4), id="v2-max"),
    pytest.param(2, {**V2_FILES, "memory.max": "268435456", "cgroup.events": "populated 1\nfrozen 1"},
                 cgroups.CgroupUsage("FROZEN", 2.5, 1048576, 268435456, 0, 4), id="v2-limit-frozen"),
])
def test_container_cgroup_files(tmp_path, version, files, usage):
    path = cgroup_dir(tmp_path, files)
    cg = cgroups.ContainerCgroups({"memory": path}, tuple((f"{path}/{name}", field, parse)
                                                          for controller in ("freezer", "cpuacct", "memory", "pids")
                                                          for name, field, parse in cgroups.CONTROLLER_FILES[controller, version]))
    assert cgroup_fs.CgroupFs.read(cg) == (usage, [])


def test_container_cgroup_files_broken_and_missing(tmp_path):
    files = {**V1_FILES, "memory.usage_in_bytes": "lots", "pids.current": "max"}
    del files["memory.oom_control"]  # before 4.13: not there at all
    path = cgroup_dir(tmp_path, files)
    cg = cgroups.ContainerCgroups({}, tuple((f"{path}/{name}", field, parse)
                                           for controller in ("freezer", "cpuacct", "memory", "pids")
                                           for name, field, parse in cgroups.CONTROLLER_FILES[controller, 1]))
    usage, errors = cgroup_fs.CgroupFs.read(cg)
    assert usage == cgroups.CgroupUsage("FROZEN", 2.5, None, None, None, None)  # the rest still read
    assert [str(e) for e in errors] == ["memory.usage_in_bytes: expected a number, found 'lots'",
                                        "pids.current: expected a number, found 'max'"]
    vanished = cgroups.ContainerCgroups({}, ((f"{path}/gone/pids.current", "processes", int),))
    usage, errors = cgroup_fs.CgroupFs.read(vanished)
    assert usage == cgroups.CgroupUsage() and errors[0].filename == f"{path}/gone"


# ---------------------------------------------------------------- monitor and init

STAT = ("4102 (init) S 4100 4102 4102 0 -1 4194560 1210 0 0 0 3 5 0 0 20 0 1 0 812345 4419584 230 "
        "18446744073709551615 1 1 0 0 0 0 0 4 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n")


@pytest.mark.parametrize("raw, expected", [
    (b"[lxc monitor] /var/lib/lxc web\0\0\0\0", lxc_monitor.MonitorIdentity("/var/lib/lxc", "web")),
    (b"[lxc monitor] /srv/my lxc web\0", lxc_monitor.MonitorIdentity("/srv/my lxc", "web")),
    (b"lxc-start\0-F\0-n\0web\0", lxc_monitor.MonitorIdentity(None, "web")),
    (b"/usr/bin/lxc-start\0--name=web\0-P\0/srv/lxc\0-F\0", lxc_monitor.MonitorIdentity("/srv/lxc", "web")),
    (b"lxc-start\0-nweb\0-P/srv/lxc\0", lxc_monitor.MonitorIdentity("/srv/lxc", "web")),
    (b"/sbin/init\0", None),
    (b"lxc-start\0-F\0", None),
    (b"", None),
])
def test_monitor_cmdline(raw, expected):
    assert lxc_monitor.parse_monitor_cmdline(raw) == expected


def test_pid_files():
    assert pid_stat.parse(STAT).ppid == 4100 and pid_stat.parse(STAT).starttime == 812345
    assert pid_stat.parse(STAT.replace("(init)", "(a) b) c)")).starttime == 812345
    with pytest.raises(ParseError, match="PID/stat"):
        pid_stat.parse("4102 (init) S 4100 4102\n")
    assert lxc_monitor.is_namespace_init("Name:\tinit\nNSpid:\t4102\t1\n")
    assert not lxc_monitor.is_namespace_init("Name:\tsh\nNSpid:\t4107\t6\n")
    assert not lxc_monitor.is_namespace_init("Name:\thelper\nNSpid:\t4107\n")  # in the host's namespace
    assert lxc_monitor.is_namespace_init("Name:\tinit\nPid:\t4102\n")  # before 4.1: no NSpid, trusted
    assert lxc_monitor.parse_children("4102 4188 ") == (4102, 4188)
    assert lxc_monitor.parse_btime("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n") == 1700000000
    with pytest.raises(ParseError, match="stat: no btime"):
        lxc_monitor.parse_btime("cpu  1 2 3\n")


def test_container_net_dev_without_lo():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
            "    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n"
            "  eth0:    1276      14    0    2    0     0          0         0      864       4    0    1    0     0       0          0\n")
    assert net_dev.parse(text, ("lo",)) == {"eth0": net_dev.NetDevCounters(1276, 14, 0, 2, 864, 4, 0, 1)}
    assert set(net_dev.parse(text)) == {"lo", "eth0"}
