"""What `rt bench` measures, per target. A target is one way to run the bundle: an rt
plugin or a peer (runc, crun, LXC, bare QEMU). Plugins add theirs via `rt_bench_targets`.

The runner times each call; a target only performs it and raises on failure.
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CGROOT = "/sys/fs/cgroup"


class NotApplicable(Exception):
    """This bundle cannot run under this target; the message says why."""


class Failed(Exception):
    """A command failed; the message carries its stderr."""


def run(cmd: list[str], *, timeout: float = 180, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
    """Run a helper in its own session, so a terminal's Ctrl-C reaches only the bench.
    Output goes to files, not pipes: a detached container inherits them and would hold a
    pipe open. If the bench is interrupted meanwhile, the helper still finishes (bounded),
    so nothing is left half-made for cleanup to miss."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=out, stderr=err, start_new_session=True)
        interrupted = False
        deadline = time.monotonic() + timeout
        pidfd = os.pidfd_open(p.pid)  # wakes at the exit itself; Popen.wait(timeout) polls
        try:
            while True:
                try:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        p.kill()
                        p.wait()
                        raise Failed(f"{' '.join(cmd)}: timed out after {timeout:.0f} s")
                    if select.select([pidfd], [], [], left)[0]:
                        break
                except KeyboardInterrupt:
                    interrupted = True
                    deadline = min(deadline, time.monotonic() + 30)
        finally:
            os.close(pidfd)
        p.wait()
        if interrupted:
            raise KeyboardInterrupt
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())
    if check and res.returncode != 0:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise Failed(f"`{os.path.basename(cmd[0])} ... {' '.join(cmd[-2:])}` exited {res.returncode}: "
                     f"{msg[-1] if msg else '(no output)'}")
    return res


def rt_argv() -> list[str]:
    """The rt that users run: the front end beside this interpreter, else `-m`."""
    exe = os.path.join(os.path.dirname(sys.executable), "rt")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "rt.core"]


def rt_py_argv() -> list[str]:
    """rt's in-process Python path (what `rt` runs when no core serves it)."""
    exe = os.path.join(os.path.dirname(sys.executable), "rt-py")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "rt.core"]


# ---- memory -------------------------------------------------------------------------

def pss_kib(pid: int) -> int:
    """Proportional set size of one process (KiB); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def instance_path(path: str, token: str) -> str:
    """The instance's own cgroup: the topmost level that names it. An init such as systemd
    sits in a child (`.../init.scope`), and its siblings belong to the instance too."""
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        if token in part:
            return "/" + "/".join(parts[:i + 1])
    return path


def memory_cgroup(pid: int, token: str = "") -> str | None:
    """The directory of the memory cgroup of pid's instance, as seen from here (v1 or v2)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v2 = None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(","):
            return os.path.join(CGROOT, "memory", instance_path(path, token).lstrip("/"))
        if ctrls == "":
            v2 = path
    if v2 is not None and os.path.exists(os.path.join(CGROOT, "cgroup.controllers")):
        return os.path.join(CGROOT, instance_path(v2, token).lstrip("/"))
    return None


def cgroup_charge_kib(cg: str) -> int:
    for name in ("memory.current", "memory.usage_in_bytes"):
        try:
            with open(os.path.join(cg, name)) as f:
                return int(f.read()) // 1024
        except (OSError, ValueError):
            continue
    return 0


def cgroup_pids(cg: str) -> set[int]:
    """Every process in cg and below it."""
    found = set()
    for top, _, files in os.walk(cg):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(top, "cgroup.procs")) as f:
                    found |= {int(x) for x in f.read().split()}
            except OSError:
                continue
    return found


def pids_naming(token: str) -> list[int]:
    """Processes whose command line names `token` as a whole word (an instance's helpers)."""
    pat = re.compile(rb"(?<![\w.-])" + re.escape(token.encode()) + rb"(?![\w.-])")
    me, found = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if pat.search(f.read()):
                    found.append(int(d))
        except OSError:
            continue
    return found


def instance_memory(pid: int | None, token: str) -> dict:
    """Host memory for one running instance: the cgroup's charge, plus the PSS of the
    processes kept for it outside that cgroup (monitors, shims)."""
    cg = memory_cgroup(pid, token) if pid else None
    inside = cgroup_pids(cg) if cg else set()
    helpers = [p for p in pids_naming(token) if p not in inside]
    helper = sum(pss_kib(p) for p in helpers)
    charge = cgroup_charge_kib(cg) if cg else 0
    return {"total_kib": helper + charge, "helper_pss_kib": helper, "cgroup_kib": charge,
            "helpers": len(helpers)}


# ---- targets --------------------------------------------------------------------------

class BenchTarget:
    """One way to run the bundle. Override what applies; the rest stays 'not applicable'."""
    name = "?"
    level = "other"   # app, system, vm (or another for third-party kinds)
    peer = False      # True for runc, crun, LXC, bare QEMU
    plugin = None     # the rt plugin measured (None for peers)
    note = ""         # shown under the table (e.g. how exec or readiness is defined)

    def available(self) -> str | None:
        """None when installed, else why not (the row is skipped with that note)."""
        return None

    def prepare(self, ctx) -> None:
        """Once, before any timing: check the bundle (raise NotApplicable) and write files."""

    def up(self, ctx, iid: str) -> None:
        """Launch an instance that stays up; return when it runs (or, for a system, is ready)."""
        raise NotApplicable("cannot keep an instance running")

    def roundtrip(self, ctx, iid: str) -> None:
        """Run the bundle with a command that exits at once, to completion."""
        raise NotApplicable("no one-shot mode")

    def exec(self, ctx, iid: str) -> None:
        """Run a command that exits at once inside the running instance."""
        raise NotApplicable("no exec")

    def down(self, ctx, iid: str) -> None:
        """Tear the running instance down completely."""

    def memory(self, ctx, iid: str) -> dict:
        raise NotApplicable("no memory measure")

    def cleanup(self, ctx, iid: str) -> None:
        """Remove whatever is left of the instance; must not fail."""

    def finish(self, ctx) -> None:
        """Once, after everything: remove what prepare or the instances left (must not fail)."""

    def overhead(self, metric: str) -> float:
        """Seconds of measuring overhead (e.g. a wrapper) to take off a timed call."""
        return 0.0


class OciTarget(BenchTarget):
    """An OCI runtime driven through runc's CLI: rt with a plugin, runc, crun."""

    def __init__(self, name: str, argv: list[str], *, level: str, peer: bool, plugin: str | None = None,
                 wrap: list[str] | None = None):
        self.name, self.argv, self.level, self.peer, self.plugin = name, argv, level, peer, plugin
        self.wrap = wrap or []
        self.wrap_s = 0.0  # cost of the wrapper alone, taken off every call
        self.root = self.up_bundle = self.true_bundle = None
        self.core = False  # rt with a warm resident core on its root (rt bench --core)
        self.core_started = False

    def available(self) -> str | None:
        exe = self.argv[0]
        if not (os.path.isabs(exe) and os.access(exe, os.X_OK)) and not shutil.which(exe):
            return f"{exe} is not installed"
        return None

    def cli(self, *args: str) -> list[str]:
        glob = ["--root", self.root] + (["--plugin", self.plugin] if self.plugin else [])
        return self.wrap + self.argv + glob + list(args)

    def adapt(self, ctx, config: dict, role: str) -> dict:
        """The bundle's config for `role` ('up': stays running; 'true': exits at once)."""
        proc = config.setdefault("process", {})
        proc["terminal"] = False
        proc["args"] = list(ctx.idle if role == "up" else ctx.true)
        ann = dict(config.get("annotations") or {})
        ann.pop("rt.plugin", None)  # the target chooses the plugin
        config["annotations"] = ann
        return config

    def prepare(self, ctx) -> None:
        base = ctx.scratch(self.name)
        self.root = os.path.join(base, "state")
        os.makedirs(self.root, exist_ok=True)
        self.up_bundle = ctx.write_bundle(os.path.join(base, "up"), self.adapt(ctx, ctx.config_copy(), "up"))
        self.true_bundle = ctx.write_bundle(os.path.join(base, "true"), self.adapt(ctx, ctx.config_copy(), "true"))
        if self.plugin:
            ctx.check_plugin(self.plugin, self.up_bundle)
        if self.wrap:
            self.wrap_s = min(_timed(self.wrap + ["/bin/true"]) for _ in range(10))
        if self.core:
            run(self.argv + ["--root", self.root, "core", "--idle-timeout", "0", "start"])
            self.core_started = True

    def finish(self, ctx) -> None:
        if self.core_started:
            run(self.argv + ["--root", self.root, "core", "stop"], check=False)
            self.core_started = False

    CALLS = {"up": 2, "roundtrip": 1, "exec": 1, "down": 1}

    def overhead(self, metric: str) -> float:
        return self.wrap_s * self.CALLS.get(metric, 0)

    def up(self, ctx, iid: str) -> None:
        run(self.cli("create", "--bundle", self.up_bundle, iid))
        run(self.cli("start", iid))
        self.ready(ctx, iid)

    def ready(self, ctx, iid: str) -> None:
        """Running once `start` returns; system containers wait for their init."""

    def roundtrip(self, ctx, iid: str) -> None:
        run(self.cli("run", "--bundle", self.true_bundle, iid))

    def exec(self, ctx, iid: str) -> None:
        run(self.cli("exec", iid, *ctx.true))

    def down(self, ctx, iid: str) -> None:
        run(self.cli("delete", "--force", iid))

    def pid(self, iid: str) -> int | None:
        res = run(self.cli("state", iid), check=False)
        if res.returncode != 0:
            return None
        return json.loads(res.stdout).get("pid") or None

    def memory(self, ctx, iid: str) -> dict:
        return instance_memory(self.pid(iid), iid)

    def cleanup(self, ctx, iid: str) -> None:
        if self.root and os.path.isdir(os.path.join(self.root, iid)):
            run(self.cli("delete", "--force", iid), check=False, timeout=60)


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    run(cmd)
    return time.perf_counter() - t


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop a process that a target started itself (never anyone else's)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
