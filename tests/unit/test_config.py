"""Flag value validation: durations, listen addresses, roots."""

import pytest

from lxcwatch.config import check_roots, deadline, duration
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.export.listen import parse_address


@pytest.mark.parametrize("text,seconds", [("1s", 1), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), ("0.25s", 0.25)])
def test_duration(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "abc", "1x", "0s", "1s2", "-1s", "s"])
def test_bad_duration(text):
    with pytest.raises(UsageError, match="invalid duration"):
        duration(text)


@pytest.mark.parametrize(
    "address,expected",
    [(":12243", ("", 12243)), ("127.0.0.1:9", ("127.0.0.1", 9)), ("[::1]:12243", ("::1", 12243)), ("localhost:80", ("localhost", 80))],
)
def test_listen_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["12243", "host:", ":0", ":70000", "host:port"])
def test_bad_listen_address(address):
    with pytest.raises(ValueError, match="invalid listen address"):
        parse_address(address)


def test_roots(tmp_path):
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "stat").write_text("cpu0 1 2 3 4 5 6 7\n")
    (tmp_path / "sys" / "class" / "net").mkdir(parents=True)
    check_roots(str(tmp_path / "proc"), str(tmp_path / "sys"))
    with pytest.raises(RuntimeFailure, match=r"--path.procfs=.*: not a directory"):
        check_roots(str(tmp_path / "missing"), str(tmp_path / "sys"))
    with pytest.raises(RuntimeFailure, match=r"--path.sysfs=.*is this a sysfs root"):
        check_roots(str(tmp_path / "proc"), str(tmp_path / "proc"))


@pytest.mark.parametrize(("flag", "interval", "seconds"), [
    (None, 1.0, 5.0),  # the floor: a first sample or a starved CPU is slow, not stuck
    (None, 0.1, 5.0),
    (None, 10.0, 8.0),  # 0.8 of the interval: a stuck collector is reported within the slot
    ("250ms", 1.0, 0.25),
    ("30s", 1.0, 30.0),
])
def test_sample_deadline(flag, interval, seconds):
    assert deadline(flag, interval) == seconds

