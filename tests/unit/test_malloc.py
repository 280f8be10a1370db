"""The agent's malloc settings (daemon.tune_malloc): the big buffers of every sample and scrape stay in the heap."""

import subprocess
import sys

import pytest

# A text and its bytes, both alive, then both freed, as a scrape does with a 1 MiB exposition; then page faults over
# 20 such rounds (ru_minflt: the kernel's count, not a timing). In a child: malloc settings are for the process.
ROUNDS = """
import resource, sys
from lxcwatch import daemon
if sys.argv[1] == "tuned":
    daemon.tune_malloc()
def scrape():
    text = "x" * 2**20
    body = text.encode()
    del text, body
for _ in range(3):
    scrape()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    scrape()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    return int(subprocess.run([sys.executable, "-c", ROUNDS, mode], check=True, capture_output=True, text=True).stdout)


def test_buffers_freed_and_taken_again_fault_no_pages_in():
    plain = faults("plain")
    if plain < 20 * 256:  # glibc's dynamic thresholds gave each 1 MiB back to the kernel (9600 faults here)
        pytest.skip(f"this libc kept the buffers without tuning ({plain} faults): nothing to compare")
    assert faults("tuned") < 20
