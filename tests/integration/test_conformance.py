"""The conformance kit (`rt conformance PLUGIN`), run as a third party runs it, against rt's
kinds; with RT_RUNTIME=runc (or runc installed) against runc too, which proves the checks."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import WITH_CORE, is_rt, runtime_path

pytestmark = [pytest.mark.root, pytest.mark.blackbox]
RT = os.path.join(os.path.dirname(sys.executable), "rt")


def conformance(*args, timeout=1200) -> tuple[subprocess.CompletedProcess, dict]:
    p = subprocess.run([RT, "conformance", *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, cwd="/")
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return p, counts


# every check, minus those for capabilities a kind does not declare
KINDS = {"app_single": 0, "lxc_system": 1, "hypervisor_kvm": 2}


@pytest.mark.parametrize("kind", list(KINDS))
def test_rt_kinds_pass_the_kit(kind, no_leaks):
    if not is_rt(runtime_path()):
        pytest.skip("rt's own kinds")
    p, counts = conformance(kind, *(["--rt-core"] if WITH_CORE else []))
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr
    assert counts.get("failed", 0) == counts.get("error", 0) == 0
    assert counts.get("skipped", 0) == KINDS[kind], p.stdout[-3000:]
    assert counts["passed"] >= 20


def test_the_kit_passes_on_runc():
    runc = runtime_path() if not is_rt(runtime_path()) else shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    p, counts = conformance("--runtime", runc)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr
    assert counts.get("skipped", 0) == 0 and counts["passed"] >= 20


def test_unknown_plugin_and_usage():
    p, _ = conformance("no-such-kind")
    assert p.returncode != 0 and "unknown plugin 'no-such-kind'" in p.stderr
    p, _ = conformance()
    assert p.returncode != 0 and "name the plugin" in p.stderr and "app_single" in p.stderr


def test_the_api_1_0_fixture_still_works(rt_conformance, make_bundle, no_leaks):
    rt_conformance("app_single", make_bundle(["sleep", "100"]))
