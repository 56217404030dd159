"""containerd (its runc v2 shim) driving rt, as `ctr run --runc-binary $(command -v rt)`."""
import os
import time

import pytest

from clients import SYSTEMD, Containerd
from conftest import client_core, runtime_path

pytestmark = pytest.mark.root
IMG = "localhost/busybox:rt"


@pytest.fixture(scope="module")
def ctrd(tmp_path_factory, busybox_rootfs):
    c = Containerd(str(tmp_path_factory.mktemp("containerd")), runtime_path(), busybox_rootfs)
    with client_core("/run/containerd/runc/default"):  # the runc shim's --root for namespace default
        yield c
    c.close()


def run_args(ctrd, *extra):
    return ["run", "--runc-binary", ctrd.rt, "--snapshotter", "native", *extra]


def test_run_echo_and_exit_code(ctrd):
    p = ctrd(run_args(ctrd, "--rm", IMG, "c-echo", "echo", "hi"))
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr
    p = ctrd(run_args(ctrd, "--rm", IMG, "c-exit", "sh", "-c", "exit 3"))
    assert p.returncode == 3, p.stderr


def test_detached_exec_kill_delete(ctrd):
    ctrd(run_args(ctrd, "-d", IMG, "c-d", "sleep", "1000"), check=True)
    p = ctrd(["tasks", "exec", "--exec-id", "e1", "c-d", "sh", "-c", "echo in; cat /proc/1/cmdline"])
    assert p.returncode == 0 and p.stdout.startswith("in\nsleep"), p.stderr
    p = ctrd(["tasks", "ps", "c-d"])
    assert p.returncode == 0 and len(p.stdout.splitlines()) >= 2, p.stderr
    ctrd(["tasks", "kill", "-s", "SIGKILL", "c-d"], check=True)
    deadline = time.monotonic() + 20
    while "STOPPED" not in ctrd(["tasks", "ls"]).stdout:
        assert time.monotonic() < deadline, ctrd(["tasks", "ls"]).stdout
        time.sleep(0.1)
    ctrd(["tasks", "delete", "c-d"], check=True)
    ctrd(["containers", "delete", "c-d"], check=True)
    assert "c-d" not in ctrd(["containers", "ls", "-q"]).stdout


def test_systemd_cgroup_driver(ctrd):
    """SystemdCgroup=true (ctr: --runc-systemd-cgroup): the shim passes --systemd-cgroup; the task
    runs in a transient scope where systemd is PID 1, and fails as runc's does elsewhere."""
    import subprocess
    p = ctrd(run_args(ctrd, "-d", "--runc-systemd-cgroup", "--cgroup", "system.slice:rt-test:c-sd", IMG, "c-sd",
                      "sleep", "1000"))
    if not SYSTEMD:
        assert p.returncode != 0 and "systemd not running on this host" in p.stderr, p.stderr
        ctrd(["containers", "delete", "c-sd"])
        return
    assert p.returncode == 0, p.stderr
    try:
        pid = next(line.split()[1] for line in ctrd(["tasks", "ls"]).stdout.splitlines() if line.startswith("c-sd "))
        with open(f"/proc/{pid}/cgroup") as f:
            assert "/system.slice/rt-test-c-sd.scope" in f.read()
    finally:
        ctrd(["tasks", "kill", "-s", "SIGKILL", "c-sd"])
        deadline = time.monotonic() + 20
        while ctrd(["tasks", "delete", "c-sd"]).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        ctrd(["containers", "delete", "c-sd"])
    p = subprocess.run(["systemctl", "show", "-p", "LoadState", "rt-test-c-sd.scope"], capture_output=True, text=True)
    assert p.stdout.strip() == "LoadState=not-found", p.stdout


def test_runtime_log_is_json(ctrd):
    """The shim passes --log B/log.json --log-format json; a failure lands there as JSON."""
    p = ctrd(run_args(ctrd, "--rm", IMG, "c-fail", "no-such-binary"))
    assert p.returncode != 0 and "executable file not found" in p.stderr


def test_second_delete_force_is_ok(tmp_path):
    """containerd deletes twice; the second `delete --force` on a gone container must exit 0."""
    import subprocess
    root = tmp_path / "state"
    p = subprocess.run([runtime_path(), "--root", str(root), "delete", "--force", "gone"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not (root / "gone").exists()
