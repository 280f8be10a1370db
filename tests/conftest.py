"""Shared pytest options (--update-golden rewrites the end-to-end golden files) and the tier markers."""

import pytest

from tests.support.paths import TESTS

TIERS = ("unit", "e2e", "live", "lab", "deploy")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    """Every test carries the marker of its tier's directory (tests/live/... is `live`), so `-m` selects tiers."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in the directory of its tier, tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.prom from the agent's output")
