"""The napi_poll tree file and the ftrace filters of the counting events (no kernel needed)."""

import re
import shutil

import pytest
from tests.support.agent import Agent
from tests.e2e.test_e2e_golden import HOSTS

from lxcwatch.sources import ethtool
from lxcwatch.kernel import napi_poll
from lxcwatch.errors import ParseError
from lxcwatch.kernel.napi_poll import NapiPolls
from lxcwatch.sources.perf_napi_poll import filters


def test_tree_file_with_and_without_the_large_budget_column():
    text = "# device polls full_polls large_budget_polls\neth0 1000 40 3\neth1 7 0\n"
    assert napi_poll.parse(text) == {"eth0": NapiPolls(1000, 40, 3), "eth1": NapiPolls(7, 0, 0)}
    assert napi_poll.parse(napi_poll.format_counts(napi_poll.parse(text))) == napi_poll.parse(text)


@pytest.mark.parametrize("line, message", [
    ("eth0 10 9 2", "more full (9) and large-budget (2) polls than polls (10)"),
    ("eth0 10 x", "not a count"),
    ("eth0 10 1 0 5", "expected 'device polls full_polls [large_budget_polls]'"),
])
def test_tree_file_errors_name_the_line(line, message):
    with pytest.raises(ParseError, match=f"lxcwatch/napi_poll:2: .*{re.escape(message)}"):
        napi_poll.parse("# header\n" + line + "\n")


def test_filters_count_full_polls_for_every_budget_up_to_64():
    polls, full, large = filters("eth0")
    assert polls == 'dev_name == "eth0"' and large == 'budget > 64 && dev_name == "eth0"'
    weight, others = full.removeprefix("(").removesuffix('))) && dev_name == "eth0"').split(" || (budget != 64 && (")
    assert weight == "(budget == 64 && work >= 64)"  # NAPI_POLL_WEIGHT
    branches = others.split(" || ")
    assert branches[0] == "(budget == 8 && work >= 8)"  # busy polling's budget
    assert sorted(branches) == sorted(f"(budget == {w} && work >= {w})" for w in range(1, 64))
    assert len(full.encode()) < 4096  # PERF_EVENT_IOC_SET_FILTER copies at most a page


def test_names_a_filter_cannot_hold_are_not_counted():
    assert filters('we"ird')[0] == "dev_name == 'we\"ird'"
    for name in ("a\"b'c", "eth*", "eth?", "eth[0]", ""):
        assert filters(name) is None, name


def test_coalesce_request_is_struct_ethtool_coalesce():
    assert ethtool._COALESCE.size == 23 * 4  # include/uapi/linux/ethtool.h: 23 __u32


def test_a_tree_with_counts_exports_them_and_a_broken_file_fails_only_its_collector(tmp_path):
    root = tmp_path / "host"
    shutil.copytree(HOSTS / "tg3-pair", root, symlinks=True)
    counts = root / "proc" / napi_poll.SOURCE
    counts.parent.mkdir()
    counts.write_text("# device polls full_polls large_budget_polls\neth0 5000 4100 0\n")
    agent = Agent([f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", f"--path.lxc={tmp_path}",
                   "--sample.interval=50ms"])
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_napi_poll_available") == 1 and e, "the tree's counts")
        assert (seen.value("lxcwatch_nic_napi_polls_total", device="eth0"),
                seen.value("lxcwatch_nic_napi_full_polls_total", device="eth0")) == (5000, 4100)
        counts.write_text("# device polls full_polls large_budget_polls\neth0 5000 banana 0\n")
        broken = agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_success", collector="napi_poll") == 0
                                and e, "the broken file to fail the collector")
        assert broken.value("lxcwatch_scrape_collector_success", collector="napi") == 1
        assert not broken.find("lxcwatch_napi_poll_available")
    finally:
        agent.stop()
    assert "lxcwatch/napi_poll:2: not a count" in agent.output()
