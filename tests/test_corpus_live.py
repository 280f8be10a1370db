"""The traces recorded on this machine's live kernel (tests/corpus/live/, made by tests/record_live.py): the
tracepoint's counts are in them, full polls only while the flood ran, and the coalescing `ethtool -c` showed."""

import json
import re
from pathlib import Path

import pytest

from lxcwatch.kernel import ethtool_coalesce, napi_poll
from lxcwatch.traces import trace

CORPUS = Path(__file__).resolve().parent / "corpus" / "live"
NAMES = ("live_veth_flood-1", "live_quiet-1")


def samples(name: str) -> list[tuple[float, dict, dict]]:
    """(t, poll counts, coalescing) of every record, through the replay's own tree and the agent's parsers."""
    tree, out = trace.Tree(), []
    records = trace.read(str(CORPUS / f"{name}.trace.gz"))
    next(records)  # the header
    for record in records:
        tree = trace.apply(tree, record)
        out.append((record.t, napi_poll.parse(tree.files[f"proc/{napi_poll.SOURCE}"]),
                    ethtool_coalesce.parse(tree.files[f"proc/{ethtool_coalesce.SOURCE}"])))
    return out


def story(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_every_sample_carries_monotonic_counts_and_the_coalescing_ethtool_showed(name):
    seen, told = samples(name), story(name)
    assert len(seen) == 60 and CORPUS.joinpath(f"{name}.trace.gz").stat().st_size < 200_000
    ethtool_c = "\n".join(told["ethtool -c eth0"])
    expected = ethtool_coalesce.Coalesce(int(re.search(r"^rx-usecs: (\d+)", ethtool_c, re.M)[1]),
                                         int(re.search(r"^rx-frames: (\d+)", ethtool_c, re.M)[1]),
                                         re.search(r"^Adaptive RX: (\w+)", ethtool_c, re.M)[1] == "on")
    for (_, before, _), (t, after, coalescing) in zip(seen, seen[1:]):
        assert set(after) == {"eth0", told["device"]}, t
        assert all(after[d].polls >= before[d].polls and after[d].full >= before[d].full for d in after), t
        assert coalescing == {"eth0": expected}, t


def test_full_polls_only_while_the_flood_ran():
    told = story("live_veth_flood-1")
    device, (start, end) = told["device"], told["flood"]
    seen = samples("live_veth_flood-1")
    full = {round(t): after[device].full - before[device].full for (_, before, _), (t, after, _) in zip(seen, seen[1:])}
    flooding = [s for t, s in full.items() if start + 1 < t < end]
    quiet = [s for t, s in full.items() if t < start or t > end + 2]
    assert sum(1 for s in flooding if s > 0) >= 0.9 * len(flooding), full
    assert quiet and set(quiet) == {0}, full


def test_the_quiet_trace_has_no_poll_of_the_veth():
    told = story("live_quiet-1")
    seen = samples("live_quiet-1")
    assert seen[0][1][told["device"]] == seen[-1][1][told["device"]] == napi_poll.NapiPolls(0, 0, 0)
