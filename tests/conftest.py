"""Shared pytest options: --update-golden rewrites the end-to-end golden files."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (agent, netlab) import as top-level modules


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.prom from the agent's output")
