"""The pytest plugin behind rt's conformance kit (entry point `pytest11`, so a plugin's own
tests get its fixtures too).

    rt conformance PLUGIN                      # the whole kit, with pytest's summary

    def test_my_backend(rt_conformance, tmp_path):      # in a plugin's own test suite
        rt_conformance("my_plugin", bundle_dir)         # the basic lifecycle on one bundle

Fixtures of the kit (core/conformance/test_kit.py uses them):
  kit       the runtime under test with its own --root, the plugin, what it supports, and bundles
            on private copies of a busybox tree; it deletes what a check left and fails the
            check on leaked mounts, cgroups or processes.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("rt conformance")
    group.addoption("--rt-plugin", default=None, help="the rt plugin (isolation kind) under test")
    group.addoption("--rt-runtime", default=None,
                    help="the runtime binary (default: the rt next to this Python); runc proves the checks")
    group.addoption("--rt-core", action="store_true", default=False,
                    help="serve each check's state root with rt's resident core (rt core start)")


def _rt() -> str:
    """This installation's rt, not whichever is first on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "rt")
    return here if os.access(here, os.X_OK) else (shutil.which("rt") or here)


def busybox_tree(dest: str) -> str:
    """A minimal busybox rootfs at `dest` from the host's static busybox (Debian's busybox-static)."""
    bb = shutil.which("busybox") or "/bin/busybox"
    if not os.access(bb, os.X_OK):
        pytest.fail("the conformance kit needs busybox-static (apt-get install busybox-static)")
    with open(bb, "rb") as f:
        if b"/ld-linux" in f.read(4096):  # a dynamic busybox would not run in the rootfs
            pytest.fail(f"{bb} is not static: install busybox-static")
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "mnt"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    shutil.copy2(bb, os.path.join(dest, "bin", "busybox"))
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for app in applets:
        link = os.path.join(dest, "bin", app)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for app in ("init", "halt", "poweroff", "reboot"):
        os.symlink("../bin/busybox", os.path.join(dest, "sbin", app))
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    with open(os.path.join(dest, "etc", "inittab"), "w") as f:  # for a system container's init
        f.write("::respawn:/bin/sleep 1000000\n")
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    return dest


def kit_config(rootfs: str, args: list[str]) -> dict:
    """A config as podman or containerd writes it (runc's `spec`, with the usual mounts)."""
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                    "cwd": "/",
                    "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                                     for k in ("bounding", "effective", "permitted", "ambient", "inheritable")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": rootfs, "readonly": False},
        "hostname": "kit",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Kit:
    """The runtime under test, with its own --root, and bundles for it. A plugin's own tests
    can use it as their CLI runner too: Kit(path, plugin, root, work="", tree="", env=...)."""

    def __init__(self, runtime: str, plugin: str | None, root: str, work: str, tree: str,
                 cgroup_parent: str = "rt-kit", env: dict | None = None):
        self.path, self.plugin, self.root, self.work, self.tree = runtime, plugin, root, work, tree
        self.cgroup_parent = cgroup_parent  # every bundle's cgroup is below it: kit runs never collide
        self.env = env  # None: ours
        self.cgroups: list[str] = []
        self.is_rt = os.path.basename(runtime).startswith("rt")
        self.ids: set[str] = set()
        self.pidfds: list[int] = []
        self._backend = False

    @property
    def backend(self):
        """The backend class under test (None for another runtime, such as runc)."""
        if self._backend is False:
            self._backend = None
            if self.is_rt:
                from rt.core.plugins import Manager, load_target
                info = Manager().load().select(self.plugin, None)
                self._backend = load_target(info.target, info.plugin)
        return self._backend

    @property
    def supports(self) -> set[str]:
        from rt.core.conformance import CAPABILITIES
        return set(CAPABILITIES) if self.backend is None else set(self.backend.supports)

    def __call__(self, *args, check=False, input=None, timeout=120, detach=False, env=None):
        glob = ["--root", self.root] + (["--plugin", self.plugin] if self.is_rt and self.plugin else [])
        cmd = [self.path, *glob, *args]
        if args[0] in ("create", "run"):
            self.ids.add(args[-1])
        # stdio in files: a container keeps what it inherits, and must not hold our pipes
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(cmd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL if detach else out, stderr=err, timeout=timeout,
                               text=True, env=env or self.env)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = ("" if detach else out.read()), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)

    def wait_status(self, cid: str, want: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (s := self.state(cid)["status"]) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return s

    def track(self, cid: str) -> int:
        """The container's pid; the kit checks at teardown that it has exited."""
        pid = self.state(cid)["pid"]
        with contextlib.suppress(OSError):
            self.pidfds.append(os.pidfd_open(pid))
        return pid

    def workload(self, rootfs: str, action: str, *params) -> list[str]:
        params = tuple(str(p) for p in params)
        if self.backend is None:
            from rt.core.conformance import busybox_workload
            return busybox_workload(action, *params)
        return list(self.backend.workload(rootfs, action, *params))

    def bundle(self, action: str | list[str], *params, edit=None, files: dict | None = None) -> str:
        """A bundle on a private copy of the busybox tree whose process does `action` (or runs
        the argv `action`, for the "posix" checks); `files` are written into the rootfs first."""
        d = os.path.join(self.work, f"bundle-{uuid.uuid4().hex[:8]}")
        rootfs = os.path.join(d, "rootfs")
        shutil.copytree(self.tree, rootfs, symlinks=True)
        for rel, text in (files or {}).items():
            with open(os.path.join(rootfs, rel.lstrip("/")), "w") as f:
                f.write(text)
        args = list(action) if isinstance(action, list) else self.workload(rootfs, action, *params)
        cfg = kit_config(rootfs, args)
        cfg["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/{os.path.basename(d)}"
        self.cgroups.append(cfg["linux"]["cgroupsPath"])
        if edit:
            edit(cfg)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        return d

    def run(self, cid: str, bundle: str) -> tuple[int, str, str]:
        """`run` in the foreground: (exit code, stdout, stderr). A kind whose process does not
        get the caller's stdio ("stdio" undeclared; a system container keeps a console of its
        own) is run on a terminal through --console-socket: stdout and stderr are both its output."""
        if "stdio" in self.supports:
            p = self("run", "--bundle", bundle, cid)
            return p.returncode, p.stdout, p.stderr
        import threading
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["terminal"] = True
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        cs = ConsoleSocket(os.path.join(self.work, f"{cid}.sock"))
        got = {}

        def read():
            try:
                master = cs.receive_master()
            except OSError:
                return
            got["out"] = read_all(master).decode(errors="replace").replace("\r\n", "\n")
            os.close(master)
        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            p = self("run", "--console-socket", cs.path, "--bundle", bundle, cid)
            t.join(60)
        finally:
            cs.close()
        return p.returncode, got.get("out", ""), p.stderr

    def create(self, cid: str, bundle: str, *extra, check=True):
        return self("create", "--bundle", bundle, *extra, cid, check=check, detach=True)

    def cleanup(self) -> list[str]:
        """Delete what the checks left; what still exists afterwards is a leak."""
        problems = []
        if os.path.isdir(self.root):
            for cid in os.listdir(self.root):
                if not cid.startswith("."):
                    problems.append(f"container {cid} was left behind")
                    self("delete", "--force", cid)
        for fd in self.pidfds:
            import select
            if not select.select([fd], [], [], 15)[0]:
                problems.append("a container process is still running after delete")
            os.close(fd)
        return problems


class ConsoleSocket:
    """The receiving end of --console-socket, as conmon runs it."""

    def __init__(self, path):
        import socket
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(60)

    def receive_master(self) -> int:
        import array
        import socket
        conn, _ = self.sock.accept()
        with conn:
            fds = array.array("i")
            _, anc, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
        assert len(fds) == 1, "no pty master received"
        return fds[0]

    def close(self):
        self.sock.close()


def read_all(fd, timeout=60.0) -> bytes:
    """What a pty master gives until its other side closes."""
    import select
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    return out


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _detach_under(base: str) -> None:
    """Detach whatever is mounted under `base` (a leak the check reports), so that removing the
    kit's directory never walks into a host directory or a cgroup hierarchy."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for m in sorted((m for m in _mounts() if m.startswith(base.rstrip("/") + "/")), key=len, reverse=True):
        libc.umount2(os.fsencode(m), 2)  # MNT_DETACH


def cgroup_dirs(path: str) -> list[str]:
    """The directories of a cgroup path in every mounted hierarchy (v1, hybrid or v2)."""
    return [d for d in (os.path.join("/sys/fs/cgroup", base, path.lstrip("/"))
                        for base in ["", *os.listdir("/sys/fs/cgroup")]) if os.path.isdir(d)]


@pytest.fixture(scope="session")
def kit_base():
    """The kit's directory: one that a user namespace's root can walk to (pytest's are 0700).
    Its name is also the parent cgroup of the session's containers, removed at the end."""
    base = tempfile.mkdtemp(prefix="rt-kit-", dir="/var/tmp")
    os.chmod(base, 0o755)
    yield base
    _detach_under(base)
    shutil.rmtree(base, ignore_errors=True)
    for d in sorted(cgroup_dirs(os.path.basename(base)), key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)


@pytest.fixture(scope="session")
def kit_tree(kit_base):
    """The busybox tree that every bundle copies."""
    return busybox_tree(os.path.join(kit_base, "tree"))


@pytest.fixture
def kit(request, kit_base, kit_tree):
    work = tempfile.mkdtemp(prefix="check-", dir=kit_base)
    os.chmod(work, 0o755)
    runtime = request.config.getoption("--rt-runtime") or _rt()
    k = Kit(shutil.which(runtime) or runtime, request.config.getoption("--rt-plugin"),
            os.path.join(work, "state"), work, kit_tree, cgroup_parent=os.path.basename(kit_base))
    for mark in request.node.iter_markers("needs"):
        missing = set(mark.args) - k.supports
        if missing:
            pytest.skip(f"{k.plugin or k.path} does not declare {', '.join(sorted(missing))}")
    core = request.config.getoption("--rt-core") and k.is_rt
    if core:
        k("core", "--idle-timeout", "0", "start", check=True)
    mounts = _mounts()
    yield k
    problems = k.cleanup()
    if core:
        status = k("core", "status")
        k("core", "stop", check=True)
        served = json.loads(status.stdout).get("served", 0) if status.returncode == 0 else 0
        if served < 1:
            problems.append(f"the resident core served none of the check's requests: {status.stdout}{status.stderr}")
    leaked = {m for m in _mounts() - mounts if m.startswith(work) or "/rt/" in m}
    problems += [f"mount {m} leaked" for m in sorted(leaked)]
    _detach_under(work)
    problems += [f"cgroup {d} leaked" for c in k.cgroups for d in cgroup_dirs(c)]
    assert not problems, "; ".join(problems)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*capabilities): a conformance check for kinds that declare them")


# --- the single-check fixture of API 1.0, kept for plugins' own suites --------------------------
def check_lifecycle(plugin: str, bundle: str, root: str, cid: str = "conformance") -> None:
    """create, state, start, kill, delete through the real CLI; the bundle's process must run
    until signalled."""
    k = Kit(_rt(), plugin, root, os.path.dirname(root), "")
    k.create(cid, bundle)
    try:
        assert k.state(cid)["status"] == "created", "after create"
        k("start", cid, check=True)
        assert k.state(cid)["status"] == "running", "after start"
        k("kill", cid, "KILL", check=True)
        assert k.wait_status(cid, "stopped") == "stopped", "container did not stop after SIGKILL"
        k("delete", cid, check=True)
        assert k("state", cid).returncode != 0, "state after delete"
    finally:
        k("delete", "--force", cid)


@pytest.fixture
def rt_conformance(tmp_path):
    def run(plugin: str, bundle: str) -> None:
        check_lifecycle(plugin, bundle, str(tmp_path / "rt-root"))
    return run
