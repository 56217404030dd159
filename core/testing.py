"""A pytest plugin for third-party backend authors (entry point `pytest11`).

    def test_my_backend(rt_conformance, my_bundle):
        rt_conformance("my_plugin", my_bundle)

`rt_conformance(plugin, bundle)` drives the real `rt` CLI through create, state, start,
kill and delete with `--plugin`, and checks the status transitions and the cleanup that
every backend owes its callers. The bundle's process should run until signalled.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest


def _rt() -> str:
    return shutil.which("rt") or os.path.join(os.path.dirname(sys.executable), "rt")


def check_lifecycle(plugin: str, bundle: str, root: str, cid: str = "conformance") -> None:
    def rt(*args, check=True):
        p = subprocess.run([_rt(), "--root", root, "--plugin", plugin, *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE if args[0] != "create" else subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        if check and p.returncode:
            raise AssertionError(f"rt {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    def status():
        return json.loads(rt("state", cid).stdout)["status"]

    rt("create", "--bundle", bundle, cid)
    try:
        assert status() == "created", "after create"
        rt("start", cid)
        assert status() == "running", "after start"
        rt("kill", cid, "KILL")
        deadline = time.monotonic() + 30
        while status() != "stopped":
            assert time.monotonic() < deadline, "container did not stop after SIGKILL"
            time.sleep(0.05)
        rt("delete", cid)
        assert rt("state", cid, check=False).returncode != 0, "state after delete"
    finally:
        rt("delete", "--force", cid, check=False)


@pytest.fixture
def rt_conformance(tmp_path):
    def run(plugin: str, bundle: str) -> None:
        check_lifecycle(plugin, bundle, str(tmp_path / "rt-root"))
    return run
