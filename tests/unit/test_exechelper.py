"""rt-exec (shim/exec.c) and its sealed memfd: what every container process is exec'd by."""
import fcntl
import os
import subprocess

import pytest

from rt.core import exechelper


def run_sealed(argv, env=None):
    """Exec the sealed helper as the stub does (execveat on the memfd) and return its result."""
    fd = exechelper.sealed_fd()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.dup2(w, 2)
            try:
                os.execve(fd, argv, env or {"PATH": "/bin"})
            finally:
                os._exit(99)
        os.close(w)
        out = b""
        while chunk := os.read(r, 4096):
            out += chunk
        os.close(r)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out.decode()
    finally:
        os.close(fd)


def test_the_memfd_is_sealed_and_close_on_exec():
    fd = exechelper.sealed_fd()
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        for name in ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE"):
            assert seals & getattr(fcntl, name), name
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with open(exechelper.path(), "rb") as f:
            assert os.pread(fd, 1 << 20, 0) == f.read()
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:rt-exec")
    finally:
        os.close(fd)


def test_it_is_static():
    """It runs inside any image: no dynamic loader from the container's rootfs."""
    with open(exechelper.path(), "rb") as f:
        data = f.read()
    assert b"/ld-linux" not in data and b"ld-musl" not in data


def test_it_execs_the_workload_with_its_argv_and_env():
    code, out = run_sealed(["rt-exec", "-", "-", "/bin/sh", "sh", "-c", 'echo "$0 $1 $X"', "zero", "one"], {"X": "env"})
    assert (code, out) == (0, "zero one env\n")


def test_a_failed_exec_says_why_with_exit_127():
    code, out = run_sealed(["rt-exec", "-", "-", "/nonexistent/x", "x"])
    assert (code, out) == (127, "exec /nonexistent/x: No such file or directory\n")


def test_anything_but_the_stub_gets_nothing():
    """`#!/proc/self/exe` reaches the helper with argv[0] "/proc/self/exe": it refuses."""
    for argv in (["/proc/self/exe", "/evil"], ["rt-exec", "-", "-"], ["x", "-", "-", "/bin/true", "true"]):
        code, out = run_sealed(argv)
        assert (code, out) == (127, "rt-exec: rt's exec helper, not for direct use\n")


def test_the_lsm_attribute_is_written_before_the_exec(tmp_path):
    attr = tmp_path / "attr"
    attr.write_text("")
    code, out = run_sealed(["rt-exec", str(attr), "exec profile-x", "/bin/true", "true"])
    assert (code, out) == (0, "")
    assert attr.read_text() == "exec profile-x"
    code, out = run_sealed(["rt-exec", str(tmp_path / "no" / "attr"), "label", "/bin/true", "true"])
    assert (code, out) == (1, "label: No such file or directory\n")


def test_built_on_first_use_without_the_packaged_binary(tmp_path, monkeypatch):
    """No rt-exec beside the stub (a build without a compiler): built into RT_CACHE."""
    from rt.core import chelper
    from rt.shim import launcher
    if chelper.compiler(exechelper.COMPILERS) is None:
        pytest.fail("needs musl-gcc or cc (scripts/setup installs them)")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "exec.c").write_bytes(open(os.path.join(launcher.SHIM_DIR, "exec.c"), "rb").read())
    monkeypatch.setattr(launcher, "SHIM_DIR", str(shim))
    monkeypatch.setattr(chelper, "CACHE", str(tmp_path / "cache"))
    built = exechelper.path()
    assert built.startswith(str(tmp_path / "cache") + "/rt-exec-")
    assert subprocess.run([built], capture_output=True, text=True).returncode == 127


@pytest.mark.skipif(os.geteuid() != 0, reason="open_tree needs CAP_SYS_ADMIN")
def test_a_file_on_the_read_only_detached_mount_refuses_writes(tmp_path):
    """What the stub is spawned from: /proc/<stub>/exe reopened for writing gets EROFS (once
    no process runs the file; ETXTBSY before that), and the file itself is unchanged."""
    from rt.shim.launcher import read_only_file
    f = tmp_path / "interp"
    f.write_bytes(b"\x7fELF original")
    fd = read_only_file(str(f))
    assert fd is not None
    try:
        with pytest.raises(OSError) as e:
            os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        assert e.value.errno == 30  # EROFS
        with open(f"/proc/self/fd/{fd}", "rb") as r:
            assert r.read() == b"\x7fELF original"
        assert not [line for line in open("/proc/self/mountinfo") if str(f) in line]  # detached
    finally:
        os.close(fd)
    f.write_bytes(b"still writable where it lives")
