"""Shared fixtures: the runtime under test, a busybox rootfs, bundles, and leak checks."""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def _searchable_by_all(path: str) -> bool:
    """Can any uid walk down to `path`? A user namespace's root is an unprivileged host uid."""
    p = os.path.abspath(path)
    while True:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except FileNotFoundError:
            pass
        if p == "/":
            return True
        p = os.path.dirname(p)


# the shared rootfs cache; a clone under a private directory (/root is 0700 on Debian) keeps
# it where the user-namespace tests' unprivileged root can reach it
CACHE = os.environ.get("RT_TEST_CACHE") or (os.path.join(REPO, ".cache") if _searchable_by_all(REPO)
                                            else "/var/tmp/rt-test-cache")
IS_ROOT = os.geteuid() == 0


def runtime_path() -> str:
    """The runtime under test: $RT_RUNTIME (e.g. runc) or the installed `rt`."""
    rt = os.environ.get("RT_RUNTIME") or shutil.which("rt") or os.path.join(os.path.dirname(sys.executable), "rt")
    if not rt or not os.path.exists(shutil.which(rt) or rt):
        pytest.fail(f"runtime {rt!r} not found: install rt (pip install .) or set RT_RUNTIME")
    return shutil.which(rt) or rt


def is_rt(rt: str) -> bool:
    return os.path.basename(rt).startswith("rt")


@pytest.fixture(scope="session")
def busybox_rootfs() -> str:
    path = os.path.join(CACHE, "busybox-rootfs")
    if not os.path.exists(os.path.join(path, "bin", "busybox")):
        subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), path], check=True)
    return path


def base_config(rootfs: str, args: list[str]) -> dict:
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                    "cwd": "/",
                    "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                                     for k in ("bounding", "effective", "permitted", "ambient", "inheritable")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": rootfs, "readonly": True},
        "hostname": "rt-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def system_config(rootfs: str, args: list[str], annotations: dict | None = None) -> dict:
    """A system container (lxc_system): its init as args, a writable root, /run, a cgroup namespace."""
    cfg = base_config(rootfs, args)
    cfg["root"]["readonly"] = False
    cfg["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    cfg["annotations"] = {"rt.plugin": "lxc_system", **(annotations or {})}
    return cfg


def write_bundle(path, cfg: dict) -> str:
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return str(path)


class Runtime:
    """Runs the runtime under test with its own --root."""

    def __init__(self, path: str, root: str):
        self.path, self.root = path, root
        self.ids: set[str] = set()

    def __call__(self, *args, check=False, input=None, timeout=60, stdout=subprocess.PIPE, **kw):
        cmd = [self.path, "--root", self.root, *args]
        if "create" in args or "run" in args:
            self.ids.add(args[-1])
        if stdout is subprocess.PIPE:
            p = subprocess.run(cmd, input=input, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout,
                               text=True, **kw)
        else:
            # A detached container keeps the stdio it inherits: use a file, not a pipe, for stderr.
            with tempfile.TemporaryFile("w+") as err:
                p = subprocess.run(cmd, input=input, stdout=stdout, stderr=err, timeout=timeout, text=True, **kw)
                err.seek(0)
                p.stderr = err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)

    def create(self, cid: str, bundle: str, *extra, **kw):
        # The container inherits our stdio; give it files, not pipes we would wait on.
        return self("create", "--bundle", bundle, *extra, cid, stdout=subprocess.DEVNULL, **kw)


# RT_TEST_CORE=1: the same tests through the resident core (rt's verbs served by `rt core`);
# unset, rt runs in-process when no core serves the root (RT_NO_CORE=1 forces it).
# (taken out of the environment: the clients' rt must see the same RT_* settings as the core)
WITH_CORE = os.environ.pop("RT_TEST_CORE", "") == "1"


def start_core(rt: str, root: str) -> None:
    subprocess.run([rt, "--root", root, "core", "--idle-timeout", "0", "start"], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def stop_core(rt: str, root: str) -> None:
    subprocess.run([rt, "--root", root, "core", "stop"], check=True, stdout=subprocess.DEVNULL, timeout=60)


@pytest.fixture
def runtime(tmp_path):
    root = tmp_path / "state"
    rt = Runtime(runtime_path(), str(root))
    core = WITH_CORE and is_rt(rt.path)
    if core:
        start_core(rt.path, str(root))
    yield rt
    # Tear down whatever a test left, so one failure does not leak into the next.
    if root.exists():
        for cid in os.listdir(root):
            if cid != ".rt-core":
                rt("delete", "--force", cid)
    if core:
        stop_core(rt.path, str(root))


@contextlib.contextmanager
def client_core(root: str):
    """Under RT_TEST_CORE=1, a core for the root a client (podman, containerd) has rt use, for
    as long as the client's tests run; it must have served some of their requests."""
    rt = runtime_path()
    if not (WITH_CORE and is_rt(rt)):
        yield
        return
    ours = root not in core_processes().values()
    if ours:
        start_core(rt, root)
    try:
        yield
        from rt.core.coreclient import request
        with tempfile.TemporaryFile() as out:
            kind, fields = request(root, ["rt", "--root", root, "core", "status"], stdio=(0, out.fileno(), 2))
            out.seek(0)
            status = json.loads(out.read()) if kind == "X" else {"served": 0}
        assert status["served"] > 1, f"the core of {root} served none of the client's requests: {status}"
    finally:
        if ours:
            stop_core(rt, root)


def core_processes() -> dict[int, str]:
    """Live resident cores: pid -> state root."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"rt.core" in argv and b"serve" in argv and b"--root" in argv:
            out[int(pid)] = os.fsdecode(argv[argv.index(b"--root") + 1])
    return out


@pytest.fixture(scope="session", autouse=True)
def _cores_of_this_session():
    """Stop any core this session started and left (a test that failed half-way)."""
    before = set(core_processes())
    yield
    for pid, root in core_processes().items():
        if pid not in before:
            subprocess.run([runtime_path(), "--root", root, "core", "stop"], stdout=subprocess.DEVNULL, timeout=60)
    import select
    for pid in set(core_processes()) - before:  # a core whose root was removed leaves on its own
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if not select.select([fd], [], [], 15)[0]:
                os.kill(pid, 15)
                raise AssertionError(f"the core {pid} this session started did not exit")
        finally:
            os.close(fd)


@pytest.fixture
def make_bundle(tmp_path, busybox_rootfs):
    def make(args=("true",), edit=None, name=None) -> str:
        d = tmp_path / (name or f"bundle-{uuid.uuid4().hex[:8]}")
        d.mkdir()
        cfg = base_config(busybox_rootfs, list(args))
        if edit:
            edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
        return str(d)
    return make


def _snapshot(ids=()):
    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4] for line in f}
    cgroups = set()
    for base in ["", *os.listdir("/sys/fs/cgroup")]:  # "": a pure v2 host's own tree
        for top in ("rt-test", *(f"rt/{i}" for i in ids)):
            d = os.path.join("/sys/fs/cgroup", base, top)
            if os.path.isdir(d):
                cgroups.add(d)
    return mounts, cgroups


@pytest.fixture
def no_leaks(runtime):
    """Fails the test if it leaves mounts, cgroups or shim processes behind."""
    before, shims = _snapshot(), set(shim_processes())
    yield
    after = _snapshot(runtime.ids)
    assert after[0] - before[0] == set(), "leaked mounts"
    assert after[1] - before[1] == set(), "leaked cgroups"
    assert not set(shim_processes()) - shims, "leaked shim processes"


def processes_with(*needles: bytes) -> list[int]:
    """Live processes whose command line contains every one of `needles`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if all(n in cmd for n in needles):
            out.append(int(pid))
    return out


def shim_processes() -> list[int]:
    """Live stubs of the rt under test (a leaked container process also leaks its cgroup)."""
    from rt.shim.launcher import STUB_CMD
    return processes_with(STUB_CMD.encode())


def pytest_collection_modifyitems(config, items):
    # Root tests must run in CI (which is root); elsewhere they are reported as skipped, loudly.
    if IS_ROOT:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run as root: root-only tests cannot be skipped there")
    skip = pytest.mark.skip(reason="needs root (namespaces, cgroups)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def _untracked() -> set[str] | None:
    try:
        out = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("??")} if out.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._rt_untracked = _untracked()


def pytest_sessionfinish(session, exitstatus):
    """Tests write only to temporary directories: a file they leave in the checkout fails the run
    (conmon once wrote `oom` into its working directory, the repository)."""
    before = getattr(session.config, "_rt_untracked", None)
    after = _untracked()
    if before is None or after is None or session.config.option.collectonly:
        return
    new = sorted(after - before)
    if new:
        session.config.get_terminal_writer().line(f"tests left files in the checkout: {', '.join(new)}", red=True)
        session.exitstatus = 1
