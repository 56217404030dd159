"""Short verbs must not import what they do not need (DESIGN §3): checked on real containers."""
import subprocess
import sys

import pytest

from conftest import is_rt, runtime_path

pytestmark = pytest.mark.root
HEAVY = ("trio", "pyroute2", "pluggy", "importlib.metadata", "msgspec", "argparse", "subprocess", "asyncio",
         "json", "re", "enum", "shutil", "signal")


def imported(runtime, *args) -> set[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "rt.core", "--root", runtime.root, *args],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.skipif(not is_rt(runtime_path()), reason="checks rt's own imports")
def test_short_verbs_stay_lean(runtime, make_bundle, no_leaks):
    runtime.create("lean", make_bundle(["sleep", "100"]), check=True)
    for verb in (["state", "lean"], ["list"], ["start", "lean"], ["pause", "lean"], ["resume", "lean"],
                 ["kill", "lean", "KILL"], ["delete", "--force", "lean"]):
        mods = imported(runtime, *verb)
        heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
        assert not heavy, f"rt {verb[0]} imported {heavy}"
        assert "rt.core.plugins" not in mods or verb[0] not in ("state", "list")
