"""Real clients (podman, containerd) under temporary roots, driving the rt under test."""
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

# systemd as PID 1 (sd_booted): the clients use its cgroup manager there, as they do by default
SYSTEMD = os.path.isdir("/run/systemd/system")


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is required in CI (scripts/setup installs it)")
    pytest.skip(f"{tool} is not installed")


def umount_under(path: str) -> None:
    """Detach any mount a client left below `path` (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        mnts = [line.split()[4] for line in f]
    for m in sorted((m for m in mnts if m.startswith(path.rstrip("/") + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def rootfs_tar(rootfs: str, dest: str) -> str:
    with tarfile.open(dest, "w") as t:
        t.add(rootfs, arcname=".")
    return dest


def podman_config(base: str, rt: str, cgroup_manager: str) -> tuple[str, str]:
    """containers.conf and storage.conf in `base` for a podman that runs `rt`; their paths."""
    conf = os.path.join(base, "containers.conf")
    with open(conf, "w") as f:
        f.write(f"""[containers]
# this host has no CAP_SYS_RESOURCE: keep rlimits below the current hard limits
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "{cgroup_manager}"
events_logger = "file"
runtime = "rt"
runtime_supports_json = ["rt"]
tmp_dir = "{base}/tmp"
[engine.runtimes]
rt = ["{rt}"]
""")
    storage = os.path.join(base, "storage.conf")
    with open(storage, "w") as f:
        f.write(f'[storage]\ndriver = "vfs"\nrunroot = "{base}/run"\ngraphroot = "{base}/storage"\n')
    return conf, storage


class Podman:
    def __init__(self, base: str, rt: str, rootfs: str):
        self.base, self.rt = base, rt
        self.bin = require("podman")
        require("conmon")
        os.makedirs(base, exist_ok=True)
        conf, storage = podman_config(base, rt, "systemd" if SYSTEMD else "cgroupfs")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)
        self(["import", rootfs_tar(rootfs, os.path.join(base, "busybox.tar")), "localhost/busybox:rt"], check=True)

    def __call__(self, args, check=False, timeout=120, **kw):
        # the runtime by its configured name, so runtime_supports_json applies (--log-format json);
        # in base: conmon writes a file named `oom` into its working directory on an OOM kill
        kw.setdefault("cwd", self.base)
        p = subprocess.run([self.bin, "--runtime", "rt", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def close(self):
        self(["rm", "-af", "-t", "0"])
        self(["system", "reset", "-f"], timeout=60)
        umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


class Containerd:
    """A private containerd: its own root, state, socket and config; stopped at close()."""

    def __init__(self, base: str, rt: str, rootfs: str):
        self.base, self.rt = base, rt
        self.bin = require("containerd")
        self.ctr = require("ctr")
        require("containerd-shim-runc-v2")
        os.makedirs(base, exist_ok=True)
        self.sock = os.path.join(base, "containerd.sock")
        cfg = os.path.join(base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
""")
        # ctr and the shim keep fifos, sockets and the runtime root under /run/containerd
        # whatever --state says: remember what was there, to remove only ours at close().
        self.run_before = set(_walk("/run/containerd"))
        self.log = open(os.path.join(base, "containerd.log"), "w")
        self.proc = subprocess.Popen([self.bin, "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(self.sock):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("containerd did not start: " + open(self.log.name).read()[-2000:])
                time.sleep(0.05)
            oci = self._oci_archive(rootfs)
            self(["images", "import", "--snapshotter", "native", oci], check=True)
        except BaseException:
            self.close()
            raise

    def _oci_archive(self, rootfs: str) -> str:
        """A one-layer OCI image archive of the busybox rootfs, made here (no registry)."""
        import hashlib
        import io
        d = os.path.join(self.base, "oci")
        blobs = os.path.join(d, "blobs", "sha256")
        os.makedirs(blobs, exist_ok=True)

        def blob(data: bytes) -> tuple[str, int]:
            h = hashlib.sha256(data).hexdigest()
            with open(os.path.join(blobs, h), "wb") as f:
                f.write(data)
            return "sha256:" + h, len(data)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            t.add(rootfs, arcname=".")
        layer, lsize = blob(buf.getvalue())
        config, csize = blob(json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin:/sbin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode())
        manifest, msize = blob(json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}],
        }).encode())
        with open(os.path.join(d, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": msize,
                "annotations": {"io.containerd.image.name": "localhost/busybox:rt",
                                "org.opencontainers.image.ref.name": "rt"}}]}, f)
        with open(os.path.join(d, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion": "1.0.0"}')
        out = os.path.join(self.base, "busybox-oci.tar")
        with tarfile.open(out, "w") as t:
            for name in ("oci-layout", "index.json", "blobs"):
                t.add(os.path.join(d, name), arcname=name)
        return out

    def __call__(self, args, check=False, timeout=120, **kw):
        p = subprocess.run([self.ctr, "--address", self.sock, *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def close(self):
        for line in self(["tasks", "ls", "-q"]).stdout.split() if self.proc.poll() is None else []:
            self(["tasks", "kill", "-s", "SIGKILL", line])
            time.sleep(0.2)
            self(["tasks", "delete", "-f", line])
        for line in self(["containers", "ls", "-q"]).stdout.split() if self.proc.poll() is None else []:
            self(["containers", "delete", line])
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        for path in sorted(set(_walk("/run/containerd")) - self.run_before, key=len, reverse=True):
            try:
                os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
            except OSError:
                pass


def _walk(top: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(top):
        out += [os.path.join(root, n) for n in dirs + files]
    return out + ([top] if os.path.isdir(top) else [])
