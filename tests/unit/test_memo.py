"""LastResult keeps a function's last result while its arguments stay equal, and only then."""

from lxcwatch.core.memo import LastResult


def test_equal_arguments_reuse_the_last_result_and_different_ones_compute_again():
    calls = []

    def sorted_names(exclude, names):
        calls.append((exclude, names))
        return sorted(n for n in names if n != exclude)

    memo = LastResult(sorted_names)
    first = memo("lo", ["eth1", "lo", "eth0"])
    assert first == ["eth0", "eth1"]
    assert memo("lo", ["eth1", "lo", "eth0"]) is first  # an equal list, not the same one: no second call
    assert len(calls) == 1
    assert memo("lo", ["eth1", "lo", "eth0", "veth0"]) == ["eth0", "eth1", "veth0"]  # a link came
    assert memo("eth0", ["eth1", "lo", "eth0", "veth0"]) == ["eth1", "lo", "veth0"]  # the filter changed
    assert memo("lo", ["eth1", "lo", "eth0"]) == ["eth0", "eth1"]  # one slot: the first arguments are computed anew
    assert len(calls) == 4
