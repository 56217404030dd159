"""rt bench at the system level: rt lxc_system next to LXC, both booting the bundle's
rootfs with its own init. Ready means init has started its first service (busybox) or
systemd says it is up: through sd_notify for rt (`start --wait-ready`), and through
`systemctl is-system-running --wait` for LXC."""
import os
import shutil
import time

from rt.core import api

READY_TIMEOUT = 120


def _has(rootfs: str, path: str) -> bool:
    return os.path.lexists(os.path.join(rootfs, path.lstrip("/")))


def wait_ready(pid: int | None, exec_argv: list[str] | None, rootfs: str) -> None:
    """Until init has a child (its first service), or systemd says it is up."""
    b = api.bench
    if pid is None:
        raise b.Failed("no init pid")
    deadline = time.monotonic() + READY_TIMEOUT
    if exec_argv and _has(rootfs, "/bin/systemctl"):
        while time.monotonic() < deadline:  # --wait returns early while systemd is not up yet
            res = b.run(exec_argv + ["systemctl", "is-system-running", "--wait"], check=False,
                        timeout=READY_TIMEOUT)
            if res.stdout.strip() in (b"running", b"degraded"):
                return
            time.sleep(0.01)
        raise b.Failed(f"systemd was not up in {READY_TIMEOUT} s")
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                if f.read().split():
                    return
        except OSError:
            raise b.Failed("init exited before it was ready")
        time.sleep(0.002)
    raise b.Failed(f"init started nothing in {READY_TIMEOUT} s")


class System(api.bench.OciTarget):
    def adapt(self, ctx, config, role):
        config = super().adapt(ctx, config, role)
        if role == "up":
            config["process"]["args"] = list(ctx.init)
        return config

    def prepare(self, ctx) -> None:
        if not _has(ctx.rootfs, ctx.init[0]):
            raise api.bench.NotApplicable(f"the rootfs has no {ctx.init[0]} to boot")
        super().prepare(ctx)

    def up(self, ctx, iid: str) -> None:  # rt's own readiness: sd_notify, or the first service
        api.bench.run(self.cli("create", "--bundle", self.up_bundle, iid))
        api.bench.run(self.cli("start", "--wait-ready", "--ready-timeout", str(READY_TIMEOUT), iid))

    def down(self, ctx, iid: str) -> None:  # a clean halt through init, as LXC's lxc-stop
        api.bench.run(self.cli("stop", iid))
        api.bench.run(self.cli("delete", iid))


class Lxc(api.bench.BenchTarget):
    name, level, peer = "LXC", "system", True
    note = "lxc-start -d / lxc-attach / lxc-stop; no network (lxc.net.0.type = empty)"

    def __init__(self):
        self.start = shutil.which("lxc-start")
        self.pivots: set[str] = set()

    def available(self) -> str | None:
        return None if self.start else "LXC is not installed (apt-get install lxc)"

    def prepare(self, ctx) -> None:
        if not _has(ctx.rootfs, ctx.init[0]):
            raise api.bench.NotApplicable(f"the rootfs has no {ctx.init[0]} to boot")
        self.path = ctx.scratch(self.name)
        self.pivots = set(self._pivots())
        mounts = [f"lxc.mount.entry = tmpfs {m['destination'].lstrip('/')} tmpfs "
                  f"{','.join(m.get('options') or ['defaults'])},create=dir 0 0"
                  for m in ctx.config.get("mounts") or []
                  if m.get("type") == "tmpfs" and m["destination"] not in ("/dev", "/dev/shm")]
        common = "/usr/share/lxc/config/common.conf"  # LXC's own defaults for every container
        self.base = [f"lxc.include = {common}"] if os.path.exists(common) else []
        if (ctx.config.get("root") or {}).get("readonly"):
            self.base.append("lxc.rootfs.options = ro")
        self.base += [f"lxc.rootfs.path = dir:{ctx.rootfs}", "lxc.net.0.type = empty",
                     "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed", "lxc.tty.max = 0", "lxc.pty.max = 16",
                     *mounts]

    @staticmethod
    def _pivots() -> list[str]:
        root = api.bench.CGROOT
        return [os.path.join(root, d, "lxc.pivot") for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d, "lxc.pivot"))]

    def _write(self, iid: str, init: list[str]) -> None:
        os.makedirs(os.path.join(self.path, iid), exist_ok=True)
        with open(os.path.join(self.path, iid, "config"), "w") as f:
            f.write("\n".join([f"lxc.uts.name = {iid[-60:]}", f"lxc.init.cmd = {' '.join(init)}", *self.base]) + "\n")

    def _lxc(self, tool: str, iid: str, *args: str) -> list[str]:
        return [f"lxc-{tool}", "-n", iid, "-P", self.path, *args]

    def _pid(self, iid: str) -> int | None:
        res = api.bench.run(self._lxc("info", iid, "-pH"), check=False)
        return int(res.stdout) if res.returncode == 0 and res.stdout.strip().isdigit() else None

    def up(self, ctx, iid: str) -> None:
        self._write(iid, ctx.init)
        api.bench.run(self._lxc("start", iid, "-d"))
        wait_ready(self._pid(iid), self._lxc("attach", iid, "--"), ctx.rootfs)

    def roundtrip(self, ctx, iid: str) -> None:
        self._write(iid, ctx.true)
        api.bench.run(self._lxc("start", iid, "-F"))

    def exec(self, ctx, iid: str) -> None:
        api.bench.run(self._lxc("attach", iid, "--", *ctx.true))

    def down(self, ctx, iid: str) -> None:
        api.bench.run(self._lxc("stop", iid))
        shutil.rmtree(os.path.join(self.path, iid))

    def memory(self, ctx, iid: str) -> dict:
        return api.bench.instance_memory(self._pid(iid), iid)  # the monitor is named by iid

    def cleanup(self, ctx, iid: str) -> None:
        if os.path.isdir(os.path.join(self.path, iid)):
            api.bench.run(self._lxc("stop", iid, "-k"), check=False, timeout=60)
            shutil.rmtree(os.path.join(self.path, iid), ignore_errors=True)

    def finish(self, ctx) -> None:
        for d in set(self._pivots()) - self.pivots:  # LXC leaves these behind; we made them
            try:
                os.rmdir(d)
            except OSError:
                pass


def targets() -> list:
    b = api.bench
    return [System("rt lxc_system", b.rt_argv(), level="system", peer=False, plugin="lxc_system"), Lxc()]
