"""docs/cli.md, runc's verbs and flags beside rt's, is what scripts/cli-table writes today."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_table_is_current():
    if not shutil.which("runc"):
        if os.environ.get("CI"):
            pytest.fail("runc is required in CI (scripts/setup installs it)")
        pytest.skip("runc is not installed")
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "cli-table"), "--check"])
    assert p.returncode == 0, "docs/cli.md is out of date: run scripts/cli-table"
