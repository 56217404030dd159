"""Attacks from inside a container (runc's CVE classes), run against the runtime under test."""
import hashlib
import os
import subprocess

import pytest

from conftest import is_rt

pytestmark = pytest.mark.root


def test_no_host_fd_reaches_the_container(runtime, make_bundle, tmp_path, no_leaks):
    """CVE-2024-21626 class: an fd the caller leaks into the runtime must not reach the container."""
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    fd = os.open(secret, os.O_RDONLY)  # inheritable, as a careless caller would leave it
    os.set_inheritable(fd, True)
    try:
        script = "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; readlink /proc/self/cwd; " \
                 f"cat /proc/self/fd/{fd} 2>&1 | head -1"
        p = subprocess.run([runtime.path, "--root", runtime.root, "run", "--bundle",
                            make_bundle(["sh", "-c", script]), "fdleak"],
                           capture_output=True, text=True, pass_fds=(fd,), timeout=60)
    finally:
        os.close(fd)
    assert p.returncode == 0, p.stderr
    fds, cwd, probe = p.stdout.splitlines()[:3]
    assert fds.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory fd
    assert cwd == "/"
    assert "host only" not in p.stdout


def test_exec_does_not_leak_fds(runtime, make_bundle, no_leaks):
    runtime.create("fx", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "fx", check=True)
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        p = subprocess.run([runtime.path, "--root", runtime.root, "exec", "fx", "ls", "/proc/self/fd"],
                           capture_output=True, text=True, pass_fds=(r,), timeout=60)
    finally:
        os.close(r)
        os.close(w)
    assert sorted(int(x) for x in p.stdout.split()) == [0, 1, 2, 3]
    runtime("delete", "--force", "fx", check=True)


def test_runtime_binary_cannot_be_overwritten(runtime, make_bundle, no_leaks):
    """CVE-2019-5736 class: while the runtime's process waits inside the container (created,
    not started), a container process must not open it through /proc/<pid>/exe for writing."""
    runtime.create("exe", make_bundle(["sleep", "100"]), check=True)
    init = runtime.state("exe")["pid"]
    # what the waiting process runs (rt: the interpreter; runc: a memfd copy) and the runtime itself
    targets = [t for t in {os.path.realpath(f"/proc/{init}/exe"), os.path.realpath(runtime.path)} if os.path.isfile(t)]
    before = [hashlib.sha256(open(t, "rb").read()).hexdigest() for t in targets]
    attack = ("for p in /proc/[0-9]*; do "
              "  [ \"$p\" = /proc/self ] && continue; "
              "  (echo pwned >> $p/exe) 2>/dev/null && echo WROTE $p; "
              "  (cat $p/exe >/dev/null) 2>/dev/null && echo READ $p; "
              "done; echo done")
    p = runtime("exec", "exe", "sh", "-c", attack)
    assert p.returncode == 0, p.stderr
    assert "WROTE" not in p.stdout, p.stdout
    if is_rt(runtime.path):  # rt's waiting process is non-dumpable: not even readable (runc's is a sealed copy)
        assert "READ /proc/1\n" not in p.stdout, p.stdout
    assert p.stdout.strip().endswith("done")
    assert [hashlib.sha256(open(t, "rb").read()).hexdigest() for t in targets] == before
    runtime("delete", "--force", "exe", check=True)


def test_masked_paths_stay_masked(runtime, make_bundle, no_leaks):
    script = ("wc -c < /proc/keys; ls /sys/firmware | wc -l; "
              "umount /proc/keys 2>/dev/null && echo UNMASKED-FILE; "
              "umount /sys/firmware 2>/dev/null && echo UNMASKED-DIR; "
              "mount -t proc proc /mnt 2>/dev/null && echo MOUNTED; "
              "touch /sys/firmware/x 2>/dev/null && echo WRITABLE; "
              "echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo SYSCTL; echo end")
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script]), "mask")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0", "end"], p.stdout
