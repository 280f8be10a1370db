"""Tree mode reads a link's files again only after inotify says they changed: each kind of change a tree can see
(a flag written in place, a file replaced as replay writes it, a port moved to another bridge, links added, removed,
renamed or re-created with another kind, a driver rebound, a module reloaded, lost notices) is seen at the next
read, compared with what a fresh reader of the same tree sees. A kernel sysfs gets no watcher and is read every
time (live test on a veth)."""

import os
import shutil
import sys
from pathlib import Path

import pytest

from bench import synthetic_host
from lxcwatch.collectors import ALL as COLLECTORS
from lxcwatch.sources import tree_watch
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.root import Root
from lxcwatch.sources.sysfs_links import SysfsLinks


OPENED: list[str] | None = None  # the paths os.open() was called with while a test listens
LISTED: list[str] | None = None  # the directories os.listdir() was called on while a test listens


def _audit(event: str, args: tuple) -> None:
    if event == "open" and OPENED is not None and isinstance(args[0], str):
        OPENED.append(args[0])
    if event == "os.listdir" and LISTED is not None:
        LISTED.append(str(args[0]))


sys.addaudithook(_audit)


class Tree:
    """A small synthetic host (4 NICs: two ixgbe, two tg3; 4 bridges; 8 veths), the reader under test and a fresh one."""

    def __init__(self, root: Path):
        self.host = synthetic_host.build(str(root), cpus=4, nics=4, queues=2, veths=8)
        self.sys = root / "sys"
        self.root = Root(str(self.sys))
        self.nics = NicDirectory(self.root)
        self.links = SysfsLinks(self.root, self.nics)  # as the agent has it: class/net listed once per sample
        self.veths = [link.name for link in self.host.links if link.kind == "veth"]

    def read(self) -> dict:
        reading = self.links.read(self.nics.current())
        return getattr(reading, "reading", reading)

    def fresh(self) -> dict:
        nics = NicDirectory(self.root)
        reader = SysfsLinks(self.root, nics)
        try:
            reading = reader.read(nics.current())
            return getattr(reading, "reading", reading)
        finally:
            reader.close()

    def dir(self, name: str) -> Path:
        return self.sys / "class" / "net" / name

    def opened_by_read(self) -> list[str]:
        global OPENED
        OPENED = []
        try:
            self.read()
            return [p for p in OPENED if "/class/net/" in p or "/devices/" in p]
        finally:
            OPENED = None


@pytest.fixture
def tree(tmp_path):
    if not tree_watch.watchable(str(tmp_path)):
        pytest.skip(f"{tmp_path} is on a filesystem without trusted inotify notices (tree_watch.WATCHABLE)")
    t = Tree(tmp_path / "host")
    yield t
    t.links.close()


def replace(path: Path, text: str) -> None:
    """As lxcwatch replay writes a file: a temporary file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_an_unchanged_tree_is_not_read_again_and_a_change_reads_only_its_link(tree):
    first = tree.read()
    assert len(first) == len(tree.host.links)
    assert tree.opened_by_read() == []  # nothing changed: no link file opened
    (tree.dir(tree.veths[3]) / "flags").write_text("0x1003\n")
    opened = tree.opened_by_read()
    assert opened and all(f"/{tree.veths[3]}/" in p for p in opened), opened


def test_a_flag_written_in_place_is_seen(tree):
    name = tree.veths[0]
    assert tree.read()[name].promiscuous is True  # synthetic_host: bridge ports are promiscuous
    with open(tree.dir(name) / "flags", "r+") as f:  # the same inode, written over
        f.write("0x1003\n")
    assert tree.read()[name].promiscuous is False
    assert tree.read() == tree.fresh()


def test_a_file_replaced_by_rename_is_seen(tree):
    name = tree.veths[1]
    assert tree.read()[name].operstate == "up"
    replace(tree.dir(name) / "operstate", "down\n")
    assert tree.read()[name].operstate == "down"
    assert tree.read() == tree.fresh()


def test_a_port_moved_to_another_bridge_is_seen(tree):
    name = tree.veths[0]
    before = tree.read()[name].master
    (tree.dir(name) / "master").unlink()
    assert tree.read()[name].master == ""
    os.symlink("../lxcbr3", tree.dir(name) / "master")
    assert before != "lxcbr3" and tree.read()[name].master == "lxcbr3"
    assert tree.read() == tree.fresh()


def test_links_added_removed_and_renamed_are_seen(tree):
    tree.read()
    gone, renamed = tree.veths[0], tree.veths[1]
    (tree.sys / "class" / "net" / gone).unlink()
    shutil.rmtree(tree.sys / "devices" / "virtual" / "net" / gone)
    virtual = tree.sys / "devices" / "virtual" / "net"
    os.rename(virtual / renamed, virtual / "vethRENAMED")
    (tree.sys / "class" / "net" / renamed).unlink()
    os.symlink("../../devices/virtual/net/vethRENAMED", tree.sys / "class" / "net" / "vethRENAMED")
    shutil.copytree(virtual / tree.veths[2], virtual / "vethADDED", symlinks=True)
    (virtual / "vethADDED" / "ifindex").write_text("900\n")
    os.symlink("../../devices/virtual/net/vethADDED", tree.sys / "class" / "net" / "vethADDED")
    links = tree.read()
    assert gone not in links and renamed not in links
    assert links["vethRENAMED"].kind == "veth" and links["vethADDED"].ifindex == 900
    assert links == tree.fresh()
    (tree.dir("vethRENAMED") / "operstate").write_text("down\n")  # the renamed link's directory is watched too
    assert tree.read()["vethRENAMED"].operstate == "down"


def test_a_link_recreated_under_its_name_with_another_kind_is_seen(tree):
    name = tree.veths[4]
    assert tree.read()[name].kind == "veth"
    virtual = tree.sys / "devices" / "virtual" / "net"
    shutil.rmtree(virtual / name)
    shutil.copytree(virtual / "lxcbr0", virtual / name, symlinks=True)  # a bridge now, under the veth's name
    (virtual / name / "ifindex").write_text("901\n")
    links = tree.read()
    assert (links[name].kind, links[name].ifindex) == ("bridge", 901)
    assert links == tree.fresh()


def test_a_driver_rebound_and_a_module_reloaded_are_seen(tree):
    tg3 = next(link for link in tree.host.links if link.nic and link.nic.driver == "tg3")
    ixgbe = next(link for link in tree.host.links if link.nic and link.nic.driver == "ixgbe")
    links = tree.read()
    assert (links[tg3.name].driver.driver, links[tg3.name].driver.version) == ("tg3", tg3.nic.module_version)
    pci = tree.sys / ixgbe.nic.pci_dir
    (pci / "driver").unlink()
    os.symlink("../../../../bus/pci/drivers/tg3", pci / "driver")  # ixgbe's function bound to tg3
    assert os.path.realpath(pci / "driver") == str(tree.sys / "bus" / "pci" / "drivers" / "tg3")
    assert tree.read()[ixgbe.name].driver.driver == "tg3"
    replace(tree.sys / "module" / "tg3" / "version", "3.119\n")  # the incident's version, loaded over 3.137
    links = tree.read()
    assert links[tg3.name].driver.version == links[ixgbe.name].driver.version == "3.119"
    assert links == tree.fresh()


def test_lost_notices_read_everything_again(tree):
    name, other = tree.veths[5], tree.veths[6]
    tree.read()
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        queue = int(f.read())
    flags, operstate = tree.dir(other) / "flags", tree.dir(other) / "operstate"
    # Alternate two files: the kernel merges a notice identical to the last one queued.
    with open(flags, "r+") as a, open(operstate, "r+") as b:
        for _ in range(queue // 2 + 1):
            a.write("0x1103\n"); a.flush(); a.seek(0)
            b.write("up\n"); b.flush(); b.seek(0)
    (tree.dir(name) / "flags").write_text("0x1003\n")  # after the overflow: its own notice is dropped
    links = tree.read()
    assert links[name].promiscuous is False
    assert links == tree.fresh()
    assert tree.opened_by_read() == []  # and watched again afterwards


def test_read_links_gives_the_collector_the_changes(tree):
    """Through the collector, as the sampler calls it."""
    class Sources:
        nics, links = tree.nics, tree.links
    name = tree.veths[7]
    assert COLLECTORS["links"].read(Sources)[name].operstate == "up"
    (tree.dir(name) / "operstate").write_text("lowerlayerdown\n")
    assert COLLECTORS["links"].read(Sources)[name].operstate == "lowerlayerdown"


def test_one_reading_of_the_nics_serves_a_whole_sample(tree):
    """The collectors of one sample share the NICs the first of them read; the next sample, or a forced reading
    (the interrupts collector's, after a driver reload), reads again."""
    ixgbe = next(link for link in tree.host.links if link.nic and link.nic.driver == "ixgbe")
    tree.nics.new_sample()
    first = tree.nics.current()
    pci = tree.sys / ixgbe.nic.pci_dir
    (pci / "driver").unlink()
    os.symlink("../../../../bus/pci/drivers/tg3", pci / "driver")
    assert tree.nics.current() is first and first[ixgbe.name].driver == "ixgbe"
    assert tree.nics.current(force=True)[ixgbe.name].driver == "tg3"
    (pci / "driver").unlink()
    os.symlink("../../../../bus/pci/drivers/ixgbe", pci / "driver")
    assert tree.nics.current()[ixgbe.name].driver == "tg3"  # still the same sample
    tree.nics.new_sample()
    assert tree.nics.current()[ixgbe.name].driver == "ixgbe"


def test_the_links_take_the_listing_of_class_net_the_nics_made_in_the_same_sample(tree):
    """One listing of class/net per sample (0.6 ms on 1013 links) serves the NICs and the links; a link added is in
    the next sample's."""
    global LISTED
    class Sources:
        nics, links = tree.nics, tree.links
    LISTED = []
    try:
        for _ in range(3):
            tree.nics.new_sample()
            tree.nics.current()  # the interrupts collector asks first
            assert tree.veths[0] in COLLECTORS["links"].read(Sources)
        assert LISTED.count(str(tree.sys / "class" / "net")) == 3
    finally:
        LISTED = None
    virtual = tree.sys / "devices" / "virtual" / "net"
    shutil.copytree(virtual / tree.veths[2], virtual / "vethADDED", symlinks=True)
    os.symlink("../../devices/virtual/net/vethADDED", tree.sys / "class" / "net" / "vethADDED")
    assert "vethADDED" not in COLLECTORS["links"].read(Sources)  # still the sample that listed before it came
    tree.nics.new_sample()
    assert "vethADDED" in COLLECTORS["links"].read(Sources)
