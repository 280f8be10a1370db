"""Shared pytest options (--update-golden rewrites the end-to-end golden files) and the network lab fixture."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (agent, netlab) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent.parent / "grafana"))  # and grafana/queries.py as `queries`


import netlab  # noqa: E402  (needs the path above)


@pytest.fixture
def lab():
    """A bridge/veth/namespace lab (tests/netlab.py), removed afterwards even when the test fails."""
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab()
    yield lab
    lab.cleanup()
    assert not netlab.leftovers(lab.suffix), "lab links or namespaces left behind"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.prom from the agent's output")
