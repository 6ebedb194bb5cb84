"""router.settings: the command line, and the README's flag table that documents it."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_version_is_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python", "-m", "router", metadata.version("infergraph")]
