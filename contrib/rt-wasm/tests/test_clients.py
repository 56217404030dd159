"""rt-wasm under its callers: podman (through conmon), `rt bench` and rt's conformance kit."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import rt_binary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces and cgroups)")


def umount_under(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m.startswith(path.rstrip("/") + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


class Podman:
    """A podman with private storage and config whose runtime is rt with rt-wasm: conmon starts the
    runtime without our environment, so the runtime is a wrapper that sets PYTHONPATH (and a --root
    of its own) and execs rt."""

    def __init__(self, base: str, site: str):
        self.base = base
        self.bin = shutil.which("podman")
        if not self.bin or not shutil.which("conmon"):
            if os.environ.get("CI"):
                pytest.fail("podman and conmon are required in CI")
            pytest.skip("podman or conmon is not installed")
        os.makedirs(base)
        self.root = os.path.join(base, "rt")
        self.runtime = os.path.join(base, "rt-wasm-runtime")
        with open(self.runtime, "w") as f:
            f.write(f"#!/bin/sh\nPYTHONPATH='{site}' RT_NO_CORE=1 exec '{rt_binary()}' --root '{self.root}' \"$@\"\n")
        os.chmod(self.runtime, 0o755)
        conf = os.path.join(base, "containers.conf")
        with open(conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]  # below this host's hard limits
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "{'systemd' if os.path.isdir('/run/systemd/system') else 'cgroupfs'}"
events_logger = "file"
runtime = "rtwasm"
runtime_supports_json = ["rtwasm"]
tmp_dir = "{base}/tmp"
[engine.runtimes]
rtwasm = ["{self.runtime}"]
""")
        storage = os.path.join(base, "storage.conf")
        with open(storage, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\nrunroot = "{base}/run"\ngraphroot = "{base}/storage"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)

    def __call__(self, *args, check=False, timeout=120):
        p = subprocess.run([self.bin, "--runtime", "rtwasm", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.base)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def close(self):
        self("rm", "-af", "-t", "0")
        self("system", "reset", "-f", timeout=60)
        umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def podman(work, site):
    pm = Podman(os.path.join(work, "podman"), site)
    yield pm
    pm.close()


@pytest.fixture(scope="module")
def modroot(work, site):
    """A rootfs that holds nothing but the module (podman --rootfs)."""
    from rt_wasm.conformance import module_bytes
    d = os.path.join(work, "modroot")
    os.makedirs(d)
    with open(os.path.join(d, "mod.wasm"), "wb") as f:
        f.write(module_bytes())
    return d


def test_podman_run(podman, modroot):
    p = podman("run", "--rm", "--annotation", "rt.plugin=wasm", "--rootfs", modroot, "/mod.wasm",
               "print", "from wasm", "on stderr", "3")
    assert (p.returncode, p.stdout) == (3, "from wasm\n"), p.stderr
    assert "on stderr" in p.stderr
    # no annotation: rt-wasm claims the bundle by its .wasm program
    p = podman("run", "--rm", "-e", "GREETING=hello", "--rootfs", modroot, "/mod.wasm", "getenv", "GREETING")
    assert (p.returncode, p.stdout) == (0, "hello\n"), p.stderr
    # podman's own binds (a volume) reach the module; a read-only one refuses writes
    vol = os.path.join(podman.base, "vol")
    os.makedirs(vol)
    p = podman("run", "--rm", "-v", f"{vol}:/data", "--rootfs", modroot, "/mod.wasm", "write", "/data/f", "via podman")
    assert p.returncode == 0, p.stderr
    assert open(os.path.join(vol, "f")).read() == "via podman"
    p = podman("run", "--rm", "-v", f"{vol}:/data:ro", "--rootfs", modroot, "/mod.wasm", "write", "/data/g", "x")
    assert p.returncode == 1 and not os.path.exists(os.path.join(vol, "g"))


def test_podman_detached_exec_stop(podman, modroot):
    cid = podman("run", "-d", "--rootfs", modroot, "/mod.wasm", "sleep", check=True).stdout.strip()
    try:
        p = podman("exec", cid, "/mod.wasm", "print", "in exec", "", "5")
        assert (p.returncode, p.stdout) == (5, "in exec\n"), p.stderr
        podman("pause", cid, check=True)
        assert podman("inspect", "-f", "{{.State.Status}}", cid, check=True).stdout.strip() == "paused"
        podman("unpause", cid, check=True)
        t = time.monotonic()
        podman("stop", "-t", "10", cid, check=True)  # SIGTERM reaches the module's host, at once
        assert time.monotonic() - t < 8
        assert podman("inspect", "-f", "{{.State.ExitCode}}", cid, check=True).stdout.strip() == "143"
    finally:
        podman("rm", "-f", "-t", "0", cid, check=True)
    assert podman("ps", "-aq").stdout == ""
    assert os.listdir(podman.root) == [] if os.path.isdir(podman.root) else True


def test_bench(rt, bundle, site, work, env):
    """`rt bench` measures rt wasm (and the bare host beside it), briefly."""
    from rt_wasm.conformance import module_bytes
    b = bundle(["/conformance.wasm", "sleep"], files={"conformance.wasm": module_bytes()})
    out = os.path.join(work, "bench-out")
    p = subprocess.run([rt_binary(), "bench", "--plugins", "wasm", "--runs", "2", "--density", "1", "--window", "5",
                        "--core", "none", "--json", "-o", out, b], capture_output=True, text=True, env=env,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    rows = {t["name"]: t for t in doc["targets"]}
    wasm = rows["rt wasm"]
    assert wasm["status"] == "ok" and not wasm["errors"], wasm
    for metric in ("up", "roundtrip", "exec", "down", "memory"):
        assert len(wasm["samples"][metric]) == 2, (metric, wasm)
    assert len(rows["wasmtime-py (bare host)"]["samples"]["roundtrip"]) == 2
    shutil.rmtree(out)


def test_conformance_kit(env):
    """rt's conformance kit (`rt conformance wasm`) on this kind, with what it declares."""
    p = subprocess.run([rt_binary(), "conformance", "wasm"], capture_output=True,
                       text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    if "unknown command" in p.stderr or "invalid choice" in p.stderr:
        pytest.skip("this rt has no conformance kit")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and "failed" not in p.stdout
