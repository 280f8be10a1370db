"""Where the repository and the tests' data live: fixture trees, golden expositions, the labelled corpus."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
HOSTS = TESTS / "fixtures" / "hosts"  # procfs/sysfs trees of hosts we do not have
OPERATOR = TESTS / "fixtures" / "operator"  # an operator's prometheus.yml and alertmanager.yml from before lxcwatch
GOLDEN = TESTS / "golden"  # expositions of the agent on the fixture trees (`make golden` rewrites them)
CORPUS = TESTS / "corpus"  # labelled traces (tests/support/tracegen.py) and recordings of this machine (live/)
SUPPORT = TESTS / "support"
BENCH = REPO / "bench"
DOCS = REPO / "docs"
