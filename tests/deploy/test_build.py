"""Building the wheel as `make run` and `make dist` do (pip, build isolation, the build-system's setuptools) prints
no deprecation warning and declares the license as an SPDX expression (PEP 639)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_the_wheel_builds_without_deprecation_warnings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", str(ROOT), "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    # setuptools >= 77 warns three times per build about a license given as a table ("`project.license` as a
    # TOML table is deprecated") and about license classifiers: both say "deprecated".
    assert "deprecated" not in log.lower(), [line for line in log.splitlines() if "deprecat" in line.lower()]
    (wheel,) = tmp_path.glob("lxcwatch-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
