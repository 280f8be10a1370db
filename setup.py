"""Writes the commit a wheel is built from into it, as lxcwatch/_revision.py: lxcwatch_build_info's revision."""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


def revision() -> str:
    """$LXCWATCH_REVISION (a build from a source tarball), else the checkout's HEAD, else "unknown"."""
    if os.environ.get("LXCWATCH_REVISION", "").strip():
        return os.environ["LXCWATCH_REVISION"].strip()
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class BuildWithRevision(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # `pip install -e`: no package copy to write into (REVISION unknown)
            return
        target = os.path.join(self.build_lib, "lxcwatch", "_revision.py")
        with open(target, "w") as f:
            f.write(f'"""The commit this wheel was built from (setup.py)."""\n\nREVISION = {revision()!r}\n')


setup(cmdclass={"build_py": BuildWithRevision})
