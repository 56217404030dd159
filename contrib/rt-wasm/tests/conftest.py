"""Fixtures of rt-wasm's tests.

The distribution is installed by the tests themselves, with its dependency (wasmtime), into a
private directory (`pip install --target`), never into rt's environment; rt finds it on
PYTHONPATH. Every container gets a --root of its own test and a cgroup below one parent of this
session; at the end nothing may be left: no container, cgroup, host process or directory.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from rt.core.testing import Kit, kit_config

HERE = os.path.dirname(os.path.abspath(__file__))
DIST = os.path.dirname(HERE)  # contrib/rt-wasm
REPO = os.path.dirname(os.path.dirname(DIST))
TAG = f"rt-wasm-test-{uuid.uuid4().hex[:8]}"  # the parent cgroup of every container of this session


def rt_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "rt")
    return here if os.access(here, os.X_OK) else (shutil.which("rt") or pytest.fail("rt is not installed"))


def cgroup_dirs(path: str) -> list[str]:
    """The directories of a cgroup path in every mounted hierarchy (v1, hybrid or v2)."""
    found = []
    for base in ["", *os.listdir("/sys/fs/cgroup")]:
        d = os.path.join("/sys/fs/cgroup", base, path.lstrip("/"))
        if os.path.isdir(d):
            found.append(d)
    return found


def host_processes(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (the private install: rt_wasm.host)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read() and int(pid) != os.getpid():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def work():
    """The session's directory: one that any uid can walk to (pytest's own are 0700)."""
    d = tempfile.mkdtemp(prefix="rt-wasm-tests-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def site(work):
    """rt-wasm and wasmtime, installed by pip into a private directory."""
    src = os.path.join(work, "src")  # a copy: pip's in-tree build would leave build/ in the repo
    shutil.copytree(DIST, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = os.path.join(work, "site")
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--target", target, src], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        pytest.fail(f"pip install --target {target} {src} failed:\n{p.stdout}\n{p.stderr}")
    shutil.rmtree(src)
    sys.path.insert(0, target)  # for wasmtime.wat2wasm in this process
    yield target
    sys.path.remove(target)
    left = host_processes(target)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"host processes left behind: {left}"


@pytest.fixture(scope="session")
def env(site):
    return dict(os.environ, PYTHONPATH=site, RT_NO_CORE="1")


@pytest.fixture(scope="session", autouse=True)
def _cgroup_parent():
    """Remove the session's parent cgroup: rt makes it and leaves it, as `mkdir -p` would."""
    yield
    left = []
    for d in cgroup_dirs(TAG):
        left += [os.path.join(d, c) for c in os.listdir(d) if os.path.isdir(os.path.join(d, c))]
        if not left:
            os.rmdir(d)
    assert not left, f"cgroups left behind: {left}"


def wat(text: str) -> bytes:
    import wasmtime
    return bytes(wasmtime.wat2wasm(text))


class Rt(Kit):
    """rt's own CLI runner for plugin tests (rt.core.testing.Kit), with this test's --root and
    the plugin on PYTHONPATH."""

    def __init__(self, root: str, env: dict):
        super().__init__(rt_binary(), None, root, work="", tree="", env=env)


@pytest.fixture
def rt(work, env, site):
    """rt under a --root of this test's own; fails the test on a container, a cgroup or a host
    process that it left behind."""
    root = tempfile.mkdtemp(prefix="state-", dir=work)
    r = Rt(root, env)
    yield r
    left = [c for c in os.listdir(root) if not c.startswith(".")]
    for cid in left:
        r("delete", "--force", cid)
    shutil.rmtree(root, ignore_errors=True)
    time.sleep(0.05)
    procs = host_processes(site)
    cgroups = [os.path.join(d, c) for d in cgroup_dirs(TAG) for c in os.listdir(d) if os.path.isdir(os.path.join(d, c))]
    assert not left, f"containers left behind: {left}"
    assert not procs, f"host processes left behind: {procs}"
    assert not cgroups, f"cgroups left behind: {cgroups}"


def spec(args: list[str], *, wasm_annotation: bool = True, cgroup: str | None = None) -> dict:
    """A config as podman writes it (rt's conformance kit's: namespaces, the usual mounts, masked
    and read-only paths, capabilities, rlimits, no_new_privs), plus a cgroup mount, with the
    container's cgroup below this session's parent."""
    cfg = kit_config("rootfs", args)
    cfg["hostname"] = "wasm"
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "noexec", "nodev", "ro"]})
    cfg["linux"]["cgroupsPath"] = f"/{TAG}/{cgroup or uuid.uuid4().hex[:12]}"
    if wasm_annotation:
        cfg["annotations"] = {"rt.plugin": "wasm"}
    return cfg


@pytest.fixture
def bundle(work):
    """bundle(args, files={path in rootfs: bytes or str}, edit=fn(config)) -> bundle directory."""
    def make(args, files=None, edit=None, **kw) -> str:
        d = os.path.join(work, f"bundle-{uuid.uuid4().hex[:8]}")
        rootfs = os.path.join(d, "rootfs")
        os.makedirs(os.path.join(rootfs, "tmp"))
        os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
        for rel, data in (files or {}).items():
            path = os.path.join(rootfs, rel.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
        cfg = spec(list(args), **kw)
        if edit:
            edit(cfg)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        return d
    return make
