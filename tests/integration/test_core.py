"""The resident core (core/server.py) and its native front end (core/client.c): what it
serves, whom it refuses, and how rt behaves when the core is slow, gone or stale."""
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import REPO, is_rt, runtime_path, start_core, stop_core, system_config, write_bundle

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's resident core", allow_module_level=True)


def native() -> bool:
    with open(runtime_path(), "rb") as f:
        return f.read(4) == b"\x7fELF"


@pytest.fixture
def core(runtime):
    """A core serving the runtime fixture's root (started here unless the suite runs with one)."""
    from conftest import WITH_CORE
    if not native():
        pytest.skip("the native front end was not built")
    if not WITH_CORE:
        start_core(runtime.path, runtime.root)
    yield Core(runtime)
    if not WITH_CORE:
        stop_core(runtime.path, runtime.root)


class Core:
    def __init__(self, runtime):
        self.rt = runtime

    def status(self) -> dict:
        from rt.core.coreclient import request
        import tempfile
        with tempfile.TemporaryFile() as out:
            kind, fields = request(self.rt.root, ["rt", "--root", self.rt.root, "core", "status"],
                                   stdio=(0, out.fileno(), 2))
            assert kind == "X", fields
            out.seek(0)
            return json.loads(out.read())

    @property
    def pid(self) -> int:
        return self.status()["pid"]

    def log(self) -> str:
        with open(os.path.join(self.rt.root, ".rt-core", "log")) as f:
            return f.read()


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_core_serves_the_lifecycle(runtime, core, make_bundle, no_leaks):
    before = core.status()
    b = make_bundle(["sleep", "100"])
    runtime.create("c1", b, check=True)
    assert runtime.state("c1")["status"] == "created"
    runtime("start", "c1", check=True)
    p = runtime("exec", "c1", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    runtime("kill", "c1", "KILL", check=True)
    runtime("delete", "c1", check=True)
    after = core.status()
    assert after["served"] - before["served"] >= 6
    assert after["fallbacks"] == before["fallbacks"], core.log()


def test_socket_is_private(runtime, core):
    d = os.path.join(runtime.root, ".rt-core")
    st, sk = os.stat(d), os.stat(os.path.join(d, "sock"))
    assert (st.st_mode & 0o777, sk.st_mode & 0o777) == (0o700, 0o600)
    assert st.st_uid == sk.st_uid == os.geteuid()


def test_a_foreign_uid_is_not_served(runtime, core):
    """A connection that another user sends on (here: handed down by a root process that
    dropped its ids) is answered F: the core acts only for its own uid."""
    code = (f"import sys; sys.path[:0] = {[p for p in __import__('sys').path if p]!r}\n"
            "from rt.core.coreclient import connect, request\n"
            f"s = connect({runtime.root!r})\n"
            "import os; os.setgid(65534); os.setuid(65534)\n"
            f"print(request({runtime.root!r}, ['rt', '--root', {runtime.root!r}, 'list'], sock=s))\n")
    p = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("('F'") and "uid 65534 is not the core" in p.stdout, p.stdout
    assert core.status()["pid"]


def test_stale_build_falls_back_and_the_core_leaves(runtime, core):
    from rt.core.coreclient import request
    pid = core.pid
    kind, fields = request(runtime.root, ["rt", "--root", runtime.root, "list"], build="an-older-build")
    assert kind == "F" and "build id" in fields[0]
    assert gone(pid), "a core that met a newer build stays"
    assert runtime("list", "-q", check=True).stdout == ""  # in-process now
    start_core(runtime.path, runtime.root)  # for the fixture's teardown


def _raw(root: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(root, ".rt-core", "sock"))
    return s


@pytest.mark.parametrize("payload", [
    b"",  # hangs up at once
    b"\x01\x00",  # a short header
    struct.pack("<I", 1 << 30),  # a huge length
    struct.pack("<I", 5) + b"hello",  # not the protocol
    struct.pack("<I", 14) + b"rt-core/1\0x\0\0",  # truncated
    struct.pack("<I", 24) + b"rt-core/1\0x\0022\0999999\0",  # a count out of range
    struct.pack("<I", 200) + b"rt-core/1\0",  # then silence: the deadline
])
def test_hostile_requests_never_crash_the_core(runtime, core, payload):
    pid = core.pid
    s = _raw(runtime.root)
    try:
        s.sendall(payload)
        if payload:
            s.settimeout(10)
            try:
                s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                pass
    finally:
        s.close()
    assert core.pid == pid
    assert runtime("list", check=True).returncode == 0


def test_request_without_its_pidfd_is_refused(runtime, core):
    s = _raw(runtime.root)
    body = b"rt-core/1\0x\0022\0" + b"1\0rt\0" + b"0\0"
    s.sendall(struct.pack("<I", len(body)) + body)
    reply = s.recv(4096)
    s.close()
    assert reply[4:5] == b"F"


def test_a_caller_in_another_mount_namespace_runs_in_process(runtime, core, make_bundle):
    runtime.create("ns1", make_bundle(["sleep", "100"]), check=True)
    before = core.status()["fallbacks"]
    p = subprocess.run(["unshare", "-m", runtime.path, "--root", runtime.root, "state", "ns1"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "created"
    assert core.status()["fallbacks"] == before + 1
    assert "mnt namespace differs" in core.log()
    runtime("delete", "-f", "ns1", check=True)


def test_different_rt_settings_run_in_process(runtime, core):
    before = core.status()["fallbacks"]
    p = runtime("list", env=dict(os.environ, RT_DISABLED_PLUGINS="hypervisor_kvm"))
    assert p.returncode == 0, p.stderr
    assert core.status()["fallbacks"] == before + 1
    assert "environment differs: RT_DISABLED_PLUGINS" in core.log()


def test_rt_no_core_forces_in_process(runtime, core):
    before = core.status()["served"]
    assert runtime("list", env=dict(os.environ, RT_NO_CORE="1")).returncode == 0
    assert core.status()["served"] == before + 1  # the status calls themselves only


def test_a_hung_core_does_not_hang_rt(runtime, core, make_bundle):
    runtime.create("h1", make_bundle(["sleep", "100"]), check=True)
    pid = core.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        p = runtime("state", "h1", env=dict(os.environ, RT_CORE_TIMEOUT="0.5"), timeout=30)
        assert p.returncode == 0 and json.loads(p.stdout)["status"] == "created", p.stderr
        assert time.monotonic() - t < 10
        # a create falls back too: the core never said go, so nothing was started twice
        runtime.create("h2", make_bundle(["sleep", "100"]), env=dict(os.environ, RT_CORE_TIMEOUT="0.5"), check=True)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert runtime.state("h2")["status"] == "created"
    assert sorted(runtime("list", "-q", check=True).stdout.split()) == ["h1", "h2"]
    for cid in ("h1", "h2"):
        runtime("delete", "-f", cid, check=True)


def test_concurrent_verbs_on_one_id_and_many(runtime, core, make_bundle, no_leaks):
    b = make_bundle(["sleep", "100"])
    ids = [f"m{i}" for i in range(6)]
    errors = []

    def life(cid):
        for step in (("create", "--bundle", b, cid), ("start", cid), ("state", cid), ("kill", cid, "KILL"),
                     ("delete", "-f", cid)):
            p = runtime(*step, stdout=subprocess.DEVNULL) if step[0] == "create" else runtime(*step)
            if p.returncode:
                errors.append((step, p.stderr))
    threads = [threading.Thread(target=life, args=(cid,)) for cid in ids]
    runtime.ids.update(ids)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # one id, many callers: state's output is each caller's own
    runtime.create("one", b, check=True)
    outs = []

    def state():
        p = runtime("state", "one")
        outs.append((p.returncode, p.stdout))
    threads = [threading.Thread(target=state) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code == 0 and json.loads(out)["id"] == "one" for code, out in outs), outs
    runtime("delete", "-f", "one", check=True)


def test_foreground_run_is_the_callers_child_and_survives_a_core_crash(runtime, core, make_bundle, no_leaks):
    b = make_bundle(["sh", "-c", "sleep 1; exit 7"])
    p = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "fg"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runtime.ids.add("fg")
    deadline = time.monotonic() + 10
    pid = 0
    while time.monotonic() < deadline and not pid:
        s = runtime("state", "fg")
        pid = json.loads(s.stdout)["pid"] if s.returncode == 0 and '"running"' in s.stdout else 0
        time.sleep(0.02)
    assert pid, "the container never ran"
    with open(f"/proc/{pid}/status") as f:
        ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    assert ppid == p.pid  # the front end adopted the init, as rt run in-process does
    os.kill(core.pid, signal.SIGKILL)
    assert p.wait(timeout=30) == 7, p.stderr.read()
    assert runtime("list", "-q", check=True).stdout == ""  # the cleanup ran in-process
    start_core(runtime.path, runtime.root)  # for the fixture's teardown


def test_core_killed_mid_request(runtime, core, tmp_path, no_leaks):
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    cfg = system_config(str(rootfs), ["sh", "-c", "trap '' USR2; sleep 1000"],
                        {"rt.system.stop-signal": "SIGUSR2", "rt.system.stop-timeout": "30"})
    b = write_bundle(tmp_path / "sys", cfg)
    runtime.create("deaf", b, "--pid-file", str(tmp_path / "pid"), check=True)
    runtime("start", "deaf", check=True)
    stop = subprocess.Popen([runtime.path, "--root", runtime.root, "stop", "deaf"], stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert stop.poll() is None  # waiting, in the core, for the init to halt
    os.kill(core.pid, signal.SIGKILL)
    assert stop.wait(timeout=30) == 1
    assert "resident core exited during the request" in stop.stderr.read()
    # the store is the truth: without a core, rt carries on from it
    assert runtime.state("deaf")["status"] == "running"
    runtime("delete", "-f", "deaf", check=True)
    start_core(runtime.path, runtime.root)


def test_preserved_fds_reach_the_container(runtime, core, make_bundle):
    b = make_bundle(["sh", "-c", "echo through-fd3 >&3"])
    r, w = os.pipe()
    try:
        p = subprocess.run(["bash", "-c", f'exec "$0" --root "$1" run --preserve-fds 1 --bundle "$2" pf 3>&{w} {w}>&-',
                            runtime.path, runtime.root, b], pass_fds=(w,), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        os.close(w)
        w = -1
        assert p.returncode == 0, p.stderr
        assert os.read(r, 100) == b"through-fd3\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert core.status()["fallbacks"] == 0, core.log()


def test_idle_core_exits(runtime, core):
    stop_core(runtime.path, runtime.root)
    subprocess.run([runtime.path, "--root", runtime.root, "core", "--idle-timeout", "1", "start"], check=True,
                   stdout=subprocess.DEVNULL)
    pid = core.pid
    assert gone(pid, timeout=15)
    assert not os.path.exists(os.path.join(runtime.root, ".rt-core", "sock"))
    start_core(runtime.path, runtime.root)


def test_core_status_and_stop_without_a_core(runtime):
    from conftest import WITH_CORE
    if WITH_CORE:
        stop_core(runtime.path, runtime.root)
    p = runtime("core", "status")
    assert (p.returncode, p.stdout) == (3, "rt core: not running\n")
    assert runtime("core", "stop").returncode == 0
    if WITH_CORE:
        start_core(runtime.path, runtime.root)


def test_the_core_lives_in_a_cgroup_of_its_own(runtime, core):
    with open(f"/proc/{core.pid}/cgroup") as f:
        mine = f.read()
    with open("/proc/self/cgroup") as f:
        ours = f.read()
    assert mine != ours and "rt-core-" in mine
    with open(f"/proc/{core.pid}/status") as f:
        status = f.read()
    assert os.getsid(core.pid) != os.getsid(0) and os.readlink(f"/proc/{core.pid}/cwd") == "/", status


def test_autostart_starts_a_rehomed_core_and_serves_later_calls(runtime):
    """RT_CORE_AUTOSTART=1: the first call runs in-process while a core starts; later calls go to it."""
    from conftest import WITH_CORE, core_processes
    if not native():
        pytest.skip("the native front end was not built")
    if WITH_CORE:
        stop_core(runtime.path, runtime.root)
    env = dict(os.environ, RT_CORE_AUTOSTART="1")
    assert runtime("list", env=env).returncode == 0
    deadline = time.monotonic() + 30
    while runtime.root not in core_processes().values() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = next(p for p, r in core_processes().items() if r == runtime.root)
    c = Core(runtime)
    while time.monotonic() < deadline and not os.path.exists(os.path.join(runtime.root, ".rt-core", "sock")):
        time.sleep(0.05)
    served = c.status()["served"]
    assert runtime("list", env=env).returncode == 0
    assert c.status()["served"] == served + 2  # the list, then this status
    with open(f"/proc/{pid}/cgroup") as f:
        assert "rt-core-" in f.read()
    stop_core(runtime.path, runtime.root)
    assert gone(pid)
    if WITH_CORE:
        start_core(runtime.path, runtime.root)  # for the fixture's teardown


def test_a_foreground_run_blocks_neither_state_nor_kill(runtime, core, make_bundle, no_leaks):
    b = make_bundle(["sleep", "100"])
    p = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "fk"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runtime.ids.add("fk")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and '"running"' not in runtime("state", "fk").stdout:
        time.sleep(0.02)
    assert runtime("kill", "fk", "KILL").returncode == 0
    assert p.wait(timeout=30) == 137, p.stderr.read()
    assert runtime("list", "-q", check=True).stdout == ""


def _fake_core(tmp_path, owner: int, dir_mode: int = 0o700):
    """A socket at <root>/.rt-core/sock that a process of `owner` listens on; returns (root,
    the listener process, the file where it records the bytes it got). tmp_path is a
    directory that `owner` can reach."""
    import pathlib
    tmp_path = pathlib.Path(tmp_path)
    root = tmp_path / "fake"
    d = root / ".rt-core"
    d.mkdir(parents=True)
    os.chown(d, owner, owner)
    os.chmod(d, dir_mode)
    got = tmp_path / "got"
    got.write_text("")
    os.chown(got, owner, owner)
    code = ("import os, socket, sys\n"
            f"os.setgid({owner}); os.setuid({owner})\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); print('up', flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); c.settimeout(2)\n"
            "    try:\n"
            "        data = c.recv(65536)\n"
            "    except OSError:\n"
            "        data = b''\n"
            "    open(sys.argv[2], 'ab').write(data)\n")
    p = subprocess.Popen([__import__("sys").executable, "-c", code, str(d / "sock"), str(got)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "up\n"
    return str(root), p, got


@pytest.mark.parametrize("owner, mode", [(65534, 0o700), (0, 0o755)])
def test_the_front_end_gives_nothing_to_a_socket_not_its_own(runtime, tmp_path, owner, mode):
    """A root that someone else can write: whatever listens there gets no request, no
    environment, no cwd and no stdio, and rt runs in-process."""
    if not native():
        pytest.skip("the native front end was not built")
    import shutil
    import tempfile
    base = tempfile.mkdtemp(prefix="rt-fake-core-")  # /tmp/pytest-of-root is 0700: out of reach
    os.chmod(base, 0o755)
    root, fake, got = _fake_core(base, owner, mode)
    try:
        p = subprocess.run([runtime.path, "--root", root, "list", "-q"], capture_output=True, text=True,
                           env=dict(os.environ, SECRET_TOKEN="hunter2"), timeout=30)
        assert (p.returncode, p.stdout) == (0, ""), p.stderr
        from rt.core.coreclient import NoCore, request
        with pytest.raises(NoCore):
            request(root, ["rt", "--root", root, "list"])
        time.sleep(0.3)
        assert got.read_bytes() == b""
    finally:
        fake.kill()
        fake.wait()
        shutil.rmtree(base)


def test_forged_credentials_are_not_believed(runtime, core):
    """A sender with CAP_SYS_ADMIN can put another pid (the core's own) in SCM_CREDENTIALS;
    the core goes by the process that connected."""
    from rt.core.server import PROTO, Conn
    target = core.pid
    s = _raw(runtime.root)
    body = PROTO + b"\0x\0" + b"22\0" + b"1\0rt\0" + b"0\0"
    pidfd = os.pidfd_open(target)
    try:
        import array
        s.sendmsg([struct.pack("<I", len(body)) + body],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd])),
                   (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", target, 0, 0))])
        reply, _, _ = Conn(s).recv(4096)
    finally:
        os.close(pidfd)
        s.close()
    assert reply[:1] == b"F" and b"not sent by the process that connected" in reply, reply


def test_a_slow_request_is_cut_at_its_deadline(runtime, core):
    s = _raw(runtime.root)
    t = time.monotonic()
    try:
        s.sendall(struct.pack("<I", 100))
        with pytest.raises((ConnectionResetError, BrokenPipeError, socket.timeout, AssertionError)):
            for _ in range(20):  # a byte every second: each read is quick, the whole is not
                s.sendall(b"r")
                time.sleep(1)
                if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    raise AssertionError("closed")
    except BlockingIOError:
        pass
    finally:
        s.close()
    assert time.monotonic() - t < 15
    assert runtime("list", check=True).returncode == 0


def test_a_preserve_fds_count_that_is_not_plain_digits_runs_in_process(runtime, core, make_bundle):
    before = core.status()["served"]
    p = runtime("run", "--preserve-fds", "0_0", "--bundle", make_bundle(["true"]), "pd")
    assert p.returncode == 0, p.stderr
    assert core.status()["served"] == before + 1  # the status call only


def test_a_system_containers_monitor_is_the_callers_not_the_cores(runtime, core, tmp_path, no_leaks):
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    b = write_bundle(tmp_path / "sys", system_config(str(rootfs), ["sh", "-c", "sleep 1000"]))
    runtime.create("mon", b, "--pid-file", str(tmp_path / "pid"), check=True)
    with open(os.path.join(runtime.root, "mon", "state.json")) as f:
        monitor = json.load(f)["extra"]["monitor"]["pid"]
    with open(f"/proc/{monitor}/status") as f:
        ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    assert ppid != core.pid
    with open(f"/proc/{monitor}/cgroup") as f:
        assert "rt-core-" not in f.read()
    runtime("delete", "-f", "mon", check=True)
    assert core.status()["fallbacks"] == 0, core.log()


def test_a_pythonpath_runs_in_process(runtime, core, tmp_path):
    """Plugins on PYTHONPATH are found in-process only (the core runs python -I)."""
    before = core.status()["fallbacks"]
    p = runtime("list", env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert p.returncode == 0, p.stderr
    assert core.status()["fallbacks"] == before + 1
    assert "PYTHONPATH is set" in core.log()
