"""Faults of the state store (issue 13): corrupt records, a full state filesystem, a create
killed half-way, failed creates and runs. After each, `delete -f` leaves nothing and the id
can be used again. Checks about rt's own files skip under RT_RUNTIME=runc."""
import contextlib
import glob
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import Runtime, is_rt

pytestmark = pytest.mark.root


# --- helpers ---------------------------------------------------------------------------------


def cgroup_dirs(path: str) -> list[str]:
    """The directories of cgroup `path` under every hierarchy (v1 and v2)."""
    return glob.glob(os.path.join("/sys/fs/cgroup", "*", path.strip("/")))


def cgroup_pids(path: str) -> set[int]:
    pids = set()
    for d in cgroup_dirs(path):
        with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
            pids.update(int(x) for x in f.read().split())
    return pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, what: str, timeout: float = 15.0, every: float = 0.0005):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def unique(name: str) -> str:
    """An id no other test uses: /rt/ID cgroups are shared by every --root on the host."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def own_cgroup(cid: str, path: str | None = None):
    """A config edit naming the cgroup, so that runc uses rt's path too (no_leaks watches /rt/ID)."""
    path = path or f"/rt/{cid}"

    def edit(c):
        c["linux"]["cgroupsPath"] = path
    return path, edit


def spawn(runtime, *args, log=None) -> subprocess.Popen:
    """A runtime command in the background; stdio to /dev/null and a file (a container inherits it)."""
    err = open(log or os.devnull, "w")
    try:
        return subprocess.Popen([runtime.path, "--root", runtime.root, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


def kill9(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signal.SIGKILL)
    p.wait(10)


def listed(runtime) -> list[str]:
    p = runtime("list", "-f", "json")
    assert p.returncode == 0, p.stderr
    return [r["id"] for r in json.loads(p.stdout) or []]


def assert_gone(runtime, cid: str, cgroup: str | None = None, pids=()) -> None:
    """Nothing of `cid` is left: state directory, list entry, cgroup, processes."""
    assert not os.path.lexists(os.path.join(runtime.root, cid)), os.listdir(os.path.join(runtime.root, cid))
    assert cid not in listed(runtime)
    if cgroup:
        assert cgroup_dirs(cgroup) == []
    for pid in pids:
        wait_for(lambda: not alive(pid), f"process {pid} to go", timeout=5)


def assert_reusable(runtime, cid: str, bundle: str) -> None:
    runtime.create(cid, bundle, check=True)
    assert runtime.state(cid)["status"] == "created"
    runtime("delete", "--force", cid, check=True)
    assert not os.path.lexists(os.path.join(runtime.root, cid))


def hook(tmp_path, name: str, body: str) -> str:
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


class Gate:
    """A createRuntime hook that says it runs, then blocks until released (or its reader is killed)."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / f"gate-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir()
        os.mkfifo(self.dir / "gate")
        self.path = hook(tmp_path, "gate", 'echo $$ > "$1/in-hook"; read x < "$1/gate"; exit 0')

    def edit(self, c):
        c["hooks"] = {"createRuntime": [{"path": self.path, "args": [self.path, str(self.dir)]}]}

    def pid(self) -> int | None:
        try:
            return int((self.dir / "in-hook").read_text())
        except (OSError, ValueError):  # not there, or not written yet
            return None

    def reached(self) -> bool:
        return self.pid() is not None

    def release(self) -> None:
        if not (self.dir / "in-hook").exists():
            return
        pid = wait_for(self.pid, "the hook's pid", timeout=5)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:  # wait for the hook to open its end
            try:
                fd = os.open(self.dir / "gate", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.01)
                continue
            os.close(fd)  # EOF: the hook's read returns
            return


@contextlib.contextmanager
def small_tmpfs(where, size="64k"):
    os.makedirs(where)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(where)], check=True)
    try:
        yield str(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def free_bytes(fs: str) -> int:
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize


def fill(fs: str, leave_pages: int = 0) -> str:
    """Fill the tmpfs `fs`, leaving `leave_pages` pages free; returns the filler's path."""
    filler = os.path.join(fs, f"filler-{uuid.uuid4().hex[:6]}")
    left = free_bytes(fs) - leave_pages * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while left > 0:
            left -= os.write(fd, b"\0" * min(left, 65536))
    finally:
        os.close(fd)
    assert free_bytes(fs) == leave_pages * 4096
    return filler


# --- 1. a corrupt state.json -------------------------------------------------------------------

CORRUPT = {
    "truncated": None,  # the first half of the real record
    "empty": b"",
    "garbage": b"\x00\x17garbage\xff",
    "not-utf8": b'{"id": "\xff\xfe"}',
    "array": b"[]",
    "string": b'"x"',
    "number": b"3",
    "wrong-type": b'{"pid": "12", "bundle": "/b"}',
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_state_file(runtime, make_bundle, tmp_path, no_leaks, kind):
    if not is_rt(runtime.path):
        pytest.skip("about rt's state.json (runc's state file is another format)")
    b = make_bundle(["sleep", "100"])
    good, bad = unique("good"), unique("bad")
    runtime.create(good, b, check=True)
    runtime.create(bad, b, check=True)
    pid = runtime.state(bad)["pid"]
    state = os.path.join(runtime.root, bad, "state.json")
    with open(state, "rb") as f:
        real = f.read()
    with open(state, "wb") as f:
        f.write(real[:len(real) // 2] if CORRUPT[kind] is None else CORRUPT[kind])

    # list: the good one, with a warning naming the bad one on stderr (runc does the same) and in --log
    log = tmp_path / "log.json"
    for args in (("list",), ("list", "-q"), ("list", "-f", "json")):
        p = runtime("--log", str(log), "--log-format", "json", *args)
        assert p.returncode == 0, p.stderr
        assert bad not in p.stdout and good in p.stdout
        assert f"corrupt state file {state}" in p.stderr
    assert listed(runtime) == [good]
    warnings = [json.loads(line) for line in log.read_text().splitlines()]
    assert warnings and all(w["level"] == "warning" and state in w["msg"] for w in warnings)

    # state names the file and the problem
    p = runtime("state", bad)
    assert p.returncode == 1
    assert f"container {bad}: corrupt state file {state}: " in p.stderr
    for internal in ("Error:", "object at 0x", "Traceback", "NULL"):
        assert internal not in p.stderr
    assert runtime.state(good)["status"] == "created"
    # delete without --force refuses, with the same message
    p = runtime("delete", bad)
    assert p.returncode == 1 and f"corrupt state file {state}" in p.stderr

    # delete -f: the process and the cgroup of the default path go with it
    assert cgroup_dirs(f"/rt/{bad}")
    p = runtime("delete", "--force", bad)
    assert p.returncode == 0, p.stderr
    assert_gone(runtime, bad, f"/rt/{bad}", [pid])
    assert runtime.state(good)["status"] == "created"
    assert_reusable(runtime, bad, b)
    runtime("delete", "--force", good, check=True)


def test_corrupt_state_of_paused_container_with_own_cgroup(runtime, make_bundle, no_leaks):
    """delete -f takes the cgroup from the saved config.json, and thaws it before the kill."""
    if not is_rt(runtime.path):
        pytest.skip("about rt's state.json")
    cid = unique("cp")
    path, edit = own_cgroup(cid, f"/rt/{cid}-own")
    b = make_bundle(["sleep", "100"], edit=edit)
    runtime("run", "-d", "--bundle", b, cid, check=True, stdout=subprocess.DEVNULL)
    runtime("pause", cid, check=True)
    pids = cgroup_pids(path)
    assert pids
    with open(os.path.join(runtime.root, cid, "state.json"), "w") as f:
        f.write("{")
    p = runtime("delete", "--force", cid)
    assert p.returncode == 0, p.stderr
    assert_gone(runtime, cid, path, pids)
    assert_reusable(runtime, cid, b)


# --- 2. half-made entries and a full state filesystem ------------------------------------------

HALF_MADE = {
    "empty-dir": [],
    "lock-only": [".lock"],
    "lock-and-tmp": [".lock", "state.json.4242.tmp"],
    "tmp-only": ["state.json.4242.tmp", "config.json.4242.tmp"],
}


@pytest.mark.parametrize("kind", sorted(HALF_MADE))
def test_half_made_entry(runtime, make_bundle, no_leaks, kind):
    if not is_rt(runtime.path):
        pytest.skip("about rt's state directory")
    b = make_bundle(["sleep", "100"])
    ok, half = unique("ok"), unique("half")
    runtime.create(ok, b, check=True)
    d = os.path.join(runtime.root, half)
    os.mkdir(d)
    for name in HALF_MADE[kind]:
        with open(os.path.join(d, name), "w") as f:
            f.write('{"pid": 1, "bun')
    p = runtime("list")
    assert p.returncode == 0 and p.stderr == ""
    assert listed(runtime) == [ok]
    assert runtime("state", half).returncode == 1
    p = runtime.create(half, b)
    assert p.returncode == 1 and "exists" in p.stderr
    p = runtime("delete", "--force", half)
    assert p.returncode == 0, p.stderr
    assert not os.path.lexists(d)
    assert_reusable(runtime, half, b)
    runtime("delete", "--force", ok, check=True)


def test_delete_force_of_create_killed_while_making_the_cgroup(runtime, make_bundle, no_leaks):
    """A 'creating' record naming its cgroup, made under some hierarchies only."""
    if not is_rt(runtime.path):
        pytest.skip("writes rt's state.json")
    from rt.core.cgroups import Cgroup
    cid = unique("halfcg")
    runtime.ids.add(cid)
    cg = Cgroup(f"/rt/{cid}")
    made = [d for d in cg.dirs().values() if d != cg.main_dir][:3]  # not the one exists() looks at
    if not made:
        pytest.skip("needs cgroup v1 or hybrid: more than one hierarchy")
    d = os.path.join(runtime.root, cid)
    os.makedirs(d)
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump({"creating": True, "plugin": "app_single", "backend": "rt.plugins.app_single.backend:AppBackend",
                   "pid": 0, "bundle": "/b", "extra": {"cgroup": f"/rt/{cid}"}}, f)
    try:
        for m in made:
            os.makedirs(m)
        assert runtime.state(cid)["status"] == "creating"
        p = runtime("delete", "--force", cid)
        assert p.returncode == 0, p.stderr
        assert_gone(runtime, cid, f"/rt/{cid}")
    finally:
        for m in made:
            with contextlib.suppress(OSError):
                os.rmdir(m)


@pytest.mark.parametrize("free_pages", [0, 1, 2])
def test_create_on_full_state_filesystem(runtime, make_bundle, tmp_path, no_leaks, free_pages):
    """With 0, 1 or 2 pages free, rt's create fails writing state.json, config.json or the
    record with the cgroup path: in each case it names the file and leaves nothing."""
    if free_pages and not is_rt(runtime.path):
        pytest.skip("the pages rt's writes need (runc's state is smaller)")
    cid = unique("full")
    path, edit = own_cgroup(cid)
    b = make_bundle(["sleep", "100"], edit=edit)
    with small_tmpfs(tmp_path / "fs") as fs:
        rt = Runtime(runtime.path, os.path.join(fs, "root"))
        os.mkdir(rt.root)
        runtime.ids.add(cid)
        try:
            filler = fill(fs, free_pages)
            p = rt.create(cid, b)
            assert p.returncode != 0
            if is_rt(rt.path):  # runc 1.1: "unable to store init state: %!w(<nil>)"
                assert f"create {cid}: write {rt.root}/{cid}/" in p.stderr, p.stderr
                assert "No space left on device" in p.stderr
            assert os.listdir(rt.root) == []  # no entry, no .lock, no temporary file
            assert_gone(rt, cid, path)
            assert rt("delete", "--force", cid).returncode == 0
            os.unlink(filler)
            assert_reusable(rt, cid, b)
        finally:
            for cid in os.listdir(rt.root):
                rt("delete", "--force", cid)


def test_state_filesystem_fills_during_create(runtime, make_bundle, tmp_path, no_leaks):
    """The last write of the record fails once the init exists: it is killed, its cgroup removed."""
    cid = unique("fills")
    path, edit = own_cgroup(cid)
    with small_tmpfs(tmp_path / "fs") as fs:
        filler = hook(tmp_path, "fill", f'/bin/dd if=/dev/zero of={fs}/filler bs=4k 2>/dev/null; exit 0')

        def edit_all(c):
            edit(c)
            c["hooks"] = {"createRuntime": [{"path": filler}]}
        b = make_bundle(["sleep", "100"], edit=edit_all)
        rt = Runtime(runtime.path, os.path.join(fs, "root"))
        os.mkdir(rt.root)
        runtime.ids.add(cid)
        try:
            p = rt.create(cid, b)
            assert p.returncode != 0
            if is_rt(rt.path):
                assert f"create {cid}: write {rt.root}/{cid}/state.json: No space left on device" in p.stderr
            assert os.listdir(rt.root) == []
            assert_gone(rt, cid, path)
        finally:
            for cid in os.listdir(rt.root):
                rt("delete", "--force", cid)


def test_pid_file_on_full_filesystem(runtime, make_bundle, tmp_path, no_leaks):
    cid = unique("pidfull")
    path, edit = own_cgroup(cid)
    b = make_bundle(["sleep", "100"], edit=edit)
    with small_tmpfs(tmp_path / "fs") as fs:
        fill(fs)
        pid_file = os.path.join(fs, "pid")
        p = runtime.create(cid, b, "--pid-file", pid_file)
        assert p.returncode != 0
        assert "no space left on device" in p.stderr.lower()
        assert_gone(runtime, cid, path)
        if is_rt(runtime.path):  # runc 1.1 leaves its temporary file behind
            assert f"write {pid_file}: No space left on device" in p.stderr
            assert sorted(n for n in os.listdir(fs) if not n.startswith("filler")) == []


# --- 3. create killed with SIGKILL at different moments ----------------------------------------


def _before_claim(runtime, tmp_path, cid, bundle, cgroup):
    """Blocked reading config.json (a fifo): before the state directory exists."""
    d = tmp_path / f"fifo-bundle-{cid}"
    d.mkdir()
    os.mkfifo(d / "config.json")
    p = spawn(runtime, "create", "--bundle", str(d), cid)
    fd = wait_for(lambda: _open_writer(d / "config.json"), "create to open config.json")
    try:
        assert not os.path.lexists(os.path.join(runtime.root, cid))
        kill9(p)
    finally:
        os.close(fd)


def _open_writer(fifo):
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # only once a reader has it open
    except OSError:
        return None


def _stopped_when(runtime, cid, bundle, cond, what, every=0.0005):
    """SIGSTOP create as soon as `cond()`, then SIGKILL it: the moment stays as it was."""
    p = spawn(runtime, "create", "--bundle", bundle, cid)
    try:
        wait_for(lambda: cond() or p.poll() is not None, what, every=every)
        os.kill(p.pid, signal.SIGSTOP)
        assert p.poll() is None, f"create ended before {what}"
    finally:
        kill9(p)


def _dir_made(runtime, tmp_path, cid, bundle, cgroup):
    """Most often before the first record is written (polled without a pause: a narrow window)."""
    d = os.path.join(runtime.root, cid)
    _stopped_when(runtime, cid, bundle, lambda: os.path.isdir(d), "the state directory", every=0)


def _claimed(runtime, tmp_path, cid, bundle, cgroup):
    state = os.path.join(runtime.root, cid, "state.json")
    _stopped_when(runtime, cid, bundle, lambda: os.path.exists(state), "the creating record")


def _cgroup_made(runtime, tmp_path, cid, bundle, cgroup):
    _stopped_when(runtime, cid, bundle, lambda: cgroup_dirs(cgroup), "the cgroup")


def _shim_running(runtime, tmp_path, cid, bundle, cgroup):
    _stopped_when(runtime, cid, bundle, lambda: cgroup_pids(cgroup), "the shim in the cgroup")


def _in_hook(runtime, tmp_path, cid, bundle, cgroup, gate):
    """The init exists, stopped before pivot_root, while a createRuntime hook runs."""
    p = spawn(runtime, "create", "--bundle", bundle, cid)
    try:
        wait_for(lambda: gate.reached() or p.poll() is not None, "the createRuntime hook")
        assert p.poll() is None
        assert cgroup_pids(cgroup)
    finally:
        kill9(p)


def _before_pid_file(runtime, tmp_path, cid, bundle, cgroup):
    """The init is ready and recorded; the pid file's write blocks (its temporary name is a fifo)."""
    pid_file = tmp_path / f"{cid}.pid"
    p = spawn(runtime, "create", "--pid-file", str(pid_file), "--bundle", bundle, cid)
    tmp = f"{pid_file}.{p.pid}.tmp"
    os.mkfifo(tmp)  # long before create gets there (it has to start Python first)
    state = os.path.join(runtime.root, cid, "state.json")

    def blocked():
        try:
            with open(state) as f:
                rec = json.load(f)
            with open(f"/proc/{p.pid}/wchan") as f:
                wchan = f.read()
        except (OSError, ValueError):
            return False
        return rec.get("creating") is False and rec.get("pid") and wchan == "wait_for_partner"
    try:
        wait_for(lambda: blocked() or p.poll() is not None, "create to block on the pid file")
        assert p.poll() is None
    finally:
        kill9(p)
        os.unlink(tmp)
    assert not pid_file.exists()


MOMENTS = {
    "before-claim": _before_claim,
    "dir-made": _dir_made,
    "claimed": _claimed,
    "cgroup-made": _cgroup_made,
    "shim-running": _shim_running,
    "in-create-runtime-hook": _in_hook,
    "before-pid-file": _before_pid_file,
}
RT_ONLY = {"claimed": "polls rt's state.json", "before-pid-file": "blocks rt's temporary pid file",
           # runc 1.1.5's delete -f then exits 0 but leaves the cgroup (and the init) behind
           "cgroup-made": "runc leaves the cgroup", "shim-running": "runc leaves the cgroup and its init",
           "in-create-runtime-hook": "runc leaves the cgroup and its init"}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_create(runtime, make_bundle, tmp_path, no_leaks, moment):
    if moment in RT_ONLY and not is_rt(runtime.path):
        pytest.skip(RT_ONLY[moment])
    cid = unique("k-" + moment)
    runtime.ids.add(cid)
    path, edit = own_cgroup(cid)
    plain = make_bundle(["sleep", "100"], edit=edit)
    gate = Gate(tmp_path)

    def gated(c):
        edit(c)
        gate.edit(c)
    try:
        if moment == "in-create-runtime-hook":
            _in_hook(runtime, tmp_path, cid, make_bundle(["sleep", "100"], edit=gated), path, gate)
        else:
            MOMENTS[moment](runtime, tmp_path, cid, plain, path)
        pids = cgroup_pids(path)
        p = runtime("delete", "--force", cid)
        assert p.returncode == 0, p.stderr
        assert_gone(runtime, cid, path, pids)
    finally:
        gate.release()
    assert_reusable(runtime, cid, plain)


# --- 4. a failed create or run leaves nothing ---------------------------------------------------


def _no_such_binary(c, tmp_path):
    c["process"]["args"] = ["/no/such/binary"]


def _failing_hook(c, tmp_path):
    c["hooks"] = {"createRuntime": [{"path": hook(tmp_path, "fail", "exit 7")}]}


def _bad_terminal(c, tmp_path):
    c["process"]["terminal"] = True  # and --console-socket names no socket


FAILURES = {"no-such-binary": _no_such_binary, "failing-hook": _failing_hook,
            "missing-pid-file-dir": None, "bad-console-socket": _bad_terminal}


@pytest.mark.parametrize("verb", ["create", "run", "run-foreground"])
@pytest.mark.parametrize("why", list(FAILURES))
def test_failed_create_or_run_leaves_nothing(runtime, make_bundle, tmp_path, no_leaks, verb, why):
    cid = unique(f"f-{verb}-{why}")
    path, edit = own_cgroup(cid)

    def edit_all(c):
        edit(c)
        if FAILURES[why]:
            FAILURES[why](c, tmp_path)
    b = make_bundle(["sleep", "100"], edit=edit_all)
    extra = []
    if why == "missing-pid-file-dir":
        extra = ["--pid-file", str(tmp_path / "no" / "such" / "dir" / "pid")]
    elif why == "bad-console-socket":
        extra = ["--console-socket", str(tmp_path / "no-such.sock")]
    if verb == "run":
        extra.append("--detach")
    p = runtime(verb.split("-")[0], "--bundle", b, *extra, cid, stdout=subprocess.DEVNULL)
    assert p.returncode != 0
    assert p.stderr.strip()
    assert_gone(runtime, cid, path)
    assert listed(runtime) == []


@pytest.mark.parametrize("verb", ["create", "run"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_create_rolls_back(runtime, make_bundle, tmp_path, no_leaks, verb, sig):
    """SIGTERM or SIGHUP while a createRuntime hook runs: the create is undone, as a failure is."""
    if not is_rt(runtime.path):
        pytest.skip("runc 1.1 dies on SIGTERM and leaves the cgroup and the init behind")
    cid = unique(f"s-{verb}-{sig}")
    path, edit = own_cgroup(cid)
    gate = Gate(tmp_path)

    def gated(c):
        edit(c)
        gate.edit(c)
    b = make_bundle(["sleep", "100"], edit=gated)
    err = tmp_path / "err"
    args = [verb, "--bundle", b] + (["--detach"] if verb == "run" else []) + [cid]
    runtime.ids.add(cid)
    p = spawn(runtime, *args, log=err)
    try:
        wait_for(lambda: gate.reached() or p.poll() is not None, "the createRuntime hook")
        os.kill(p.pid, sig)
        gate.release()  # the hook's runner waits for it
        assert p.wait(20) == 128 + sig
    finally:
        if p.poll() is None:
            kill9(p)
        gate.release()
    assert f"create {cid}: interrupted by {signal.Signals(sig).name}" in err.read_text()
    assert_gone(runtime, cid, path)


def test_remove_detaches_a_mount_left_in_the_entry(tmp_path):
    """A mount left in a state entry (a restore that died with its criu-root bound) is detached,
    never walked into: what it shows survives."""
    from rt.core.store import Store
    precious = tmp_path / "rootfs"
    precious.mkdir()
    (precious / "keep").write_text("x")
    st = Store(str(tmp_path / "state"))
    c = st.create("m1", {"bundle": "", "pid": 0, "extra": {}})
    target = os.path.join(c.dir, "criu-root")
    os.mkdir(target)
    subprocess.run(["mount", "--bind", str(precious), target], check=True)
    try:
        c.remove()
    finally:  # (os.path.ismount misses a bind from the same filesystem)
        subprocess.run(["umount", "-l", target], stderr=subprocess.DEVNULL)
    assert (precious / "keep").read_text() == "x"
    assert not os.path.exists(c.dir)
