"""podman (with conmon) driving rt, as `podman --runtime $(command -v rt)`."""
import subprocess
import time

import pytest

from clients import SYSTEMD, Podman
from conftest import client_core, runtime_path

pytestmark = pytest.mark.root
IMG = "localhost/busybox:rt"


@pytest.fixture(scope="module")
def podman(tmp_path_factory, busybox_rootfs):
    pm = Podman(str(tmp_path_factory.mktemp("podman")), runtime_path(), busybox_rootfs)
    with client_core("/run/rt"):  # podman passes no --root: rt's default
        yield pm
    pm.close()


def test_run_rm_echo(podman):
    p = podman(["run", "--rm", IMG, "echo", "hi"])
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr


def test_the_cgroup_manager_places_the_container(podman):
    """podman's default manager on the host: systemd (rt --systemd-cgroup, a libpod-ID.scope in
    machine.slice) where systemd is PID 1, else cgroupfs (libpod_parent/libpod-ID)."""
    cid = podman(["run", "-d", IMG, "sleep", "1000"], check=True).stdout.strip()
    try:
        pid = podman(["inspect", "-f", "{{.State.Pid}}", cid], check=True).stdout.strip()
        with open(f"/proc/{pid}/cgroup") as f:
            cgroups = f.read()
        if SYSTEMD:
            assert f"/machine.slice/libpod-{cid}.scope" in cgroups, cgroups
            p = subprocess.run(["systemctl", "is-active", f"libpod-{cid}.scope"], capture_output=True, text=True)
            assert p.stdout.strip() == "active", p.stdout
        else:
            assert f"/libpod_parent/libpod-{cid}" in cgroups, cgroups
    finally:
        podman(["rm", "-f", "-t", "0", cid], check=True)
    if SYSTEMD:
        p = subprocess.run(["systemctl", "show", "-p", "LoadState", f"libpod-{cid}.scope"], capture_output=True,
                           text=True)
        assert p.stdout.strip() == "LoadState=not-found", p.stdout


def test_exit_code(podman):
    assert podman(["run", "--rm", IMG, "sh", "-c", "exit 3"]).returncode == 3


def test_missing_executable(podman):
    p = podman(["run", "--rm", IMG, "no-such-binary"])
    assert p.returncode == 127 and "executable file not found" in p.stderr


def test_detached_exec_stop_kill_rm(podman):
    podman(["run", "-d", "--name", "d1", IMG, "sleep", "1000"], check=True)
    p = podman(["exec", "d1", "sh", "-c", "echo in; cat /proc/1/cmdline"])
    assert p.returncode == 0 and p.stdout.startswith("in\nsleep"), p.stderr
    assert podman(["exec", "d1", "sh", "-c", "exit 5"]).returncode == 5
    podman(["stop", "-t", "1", "d1"], check=True)
    assert "Exited" in podman(["ps", "-a", "--filter", "name=d1", "--format", "{{.Status}}"]).stdout
    podman(["start", "d1"], check=True)
    podman(["kill", "d1"], check=True)
    deadline = time.monotonic() + 20
    while "Exited" not in podman(["ps", "-a", "--filter", "name=d1", "--format", "{{.Status}}"]).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    podman(["rm", "d1"], check=True)
    assert podman(["ps", "-aq"]).stdout == ""


def test_interactive_tty(podman, tmp_path):
    log = tmp_path / "typescript"
    cmd = f"{podman.bin} --runtime rt run --rm -it {IMG} sh -c 'sleep 1; tty; echo in-tty'"  # sleep: podman's attach races a fast exit
    p = subprocess.run(["script", "-qec", cmd, str(log)], env=podman.env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    text = log.read_text()
    assert "/dev/pts/0" in text and "in-tty" in text


def test_memory_limit_oom_kill(podman):
    """A child that outgrows --memory is OOM-killed; the container's cgroup counts the kill."""
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
              # the child volunteers for the OOM killer, so the outer shell lives to report
              "sh -c 'echo 1000 > /proc/self/oom_score_adj; x=$(head -c 100000000 /dev/zero | tr \"\\0\" a); "
              "echo survived'; echo child=$?; "
              "grep oom_kill /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || grep oom_kill /sys/fs/cgroup/memory.events")
    p = podman(["run", "--rm", "--memory", "16m", IMG, "sh", "-c", script])
    lines = p.stdout.splitlines()
    assert lines[0] == "16777216" and "survived" not in p.stdout, p.stdout + p.stderr
    assert "child=137" in lines
    kills = [int(x.split()[1]) for x in lines if x.startswith("oom_kill ")]
    assert kills and kills[0] >= 1


def test_pids_limit(podman):
    p = podman(["run", "--rm", "--pids-limit", "5", IMG, "sh", "-c",
                "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
                "for i in 1 2 3 4 5 6; do sleep 5 & done; echo all-forked"])
    assert p.stdout.splitlines()[0] == "5" and "all-forked" not in p.stdout
    assert "can't fork" in p.stderr


def test_runtime_is_the_one_under_test(podman):
    p = podman(["info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}"])
    assert p.stdout.split() == ["rt", podman.rt]


def test_vm_through_podman(podman):
    """The same image in a VM, chosen by annotation: the guest kernel answers uname."""
    import os
    import platform
    p = podman(["run", "--rm", "--annotation", "rt.plugin=hypervisor_kvm", IMG, "sh", "-c", "uname -r; exit 7"])
    assert p.returncode == 7, p.stderr
    assert p.stdout.strip() != platform.release() and p.stdout.strip() in os.listdir("/lib/modules")


def test_vm_interactive_tty_through_podman(podman, tmp_path):
    """`podman run -it` of a VM: conmon gets the pty master through --console-socket."""
    import os
    log = tmp_path / "typescript"
    cmd = (f"{podman.bin} --runtime rt run --rm -it --annotation rt.plugin=hypervisor_kvm {IMG} "
           "sh -c 'sleep 1; tty; uname -r'")
    p = subprocess.run(["script", "-qec", cmd, str(log)], env=podman.env, capture_output=True, text=True, timeout=180,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    text = log.read_text()
    assert "/dev/pts/0" in text and any(v in text for v in os.listdir("/lib/modules") if v != os.uname().release)
