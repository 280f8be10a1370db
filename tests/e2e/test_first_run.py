"""A first run from a checkout: the default flight recorder ring's directory is made as the unit's StateDirectory=
would make it; a ring path given by hand is never guessed at."""

import os
import stat

from lxcwatch import cli
from lxcwatch.blackbox import flight_recorder as fr
from lxcwatch.blackbox import options

BOOT = "6f1d2b4e-8a1c-4d3e-9f00-0123456789ab"


def blackbox_options(*argv: str) -> options.Options:
    return cli.agent_settings(list(argv)).blackbox


def test_the_default_ring_is_marked_as_the_agents_own():
    o = blackbox_options()
    assert o.ring == "/var/lib/lxcwatch/flight.ring" and o.ring_is_default


def test_a_ring_given_by_hand_is_not():
    assert not blackbox_options("--recorder.path=/srv/black/box.ring").ring_is_default
    assert not blackbox_options("--recorder.path=/var/lib/lxcwatch/flight.ring").ring_is_default
    assert not blackbox_options("--no-recorder").ring_is_default


def test_the_recorder_makes_its_own_directory_as_systemd_would(tmp_path):
    ring = tmp_path / "lxcwatch" / "flight.ring"
    recorder = fr.Recorder(str(ring), 1 << 16, 5.0, BOOT, make_directory=True)
    try:
        assert recorder.enabled and recorder.errors == 0
    finally:
        recorder.stop()
    # StateDirectoryMode='s default (systemd.exec(5)); the umask of a root shell (022) leaves it as it is.
    assert stat.S_IMODE(os.stat(ring.parent).st_mode) == 0o755 & ~current_umask()
    assert [r.kind for r in fr.read(str(ring)).records] == [2, 3]  # start, stop (docs/postmortem.md)


def test_a_missing_directory_of_a_ring_given_by_hand_stays_an_error(tmp_path):
    recorder = fr.Recorder(str(tmp_path / "typo" / "flight.ring"), 1 << 16, 5.0, BOOT)
    assert not recorder.enabled and recorder.errors == 1
    assert not (tmp_path / "typo").exists()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
