"""The measuring loop: every target, every run, then density; progress on stderr and
cleanup of every instance, also after Ctrl-C or SIGTERM."""
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time

from .stats import summarize
from .targets import BenchTarget, Failed, NotApplicable

METRICS = [  # key, label, unit
    ("up", "time to running", "ms"),
    ("roundtrip", "run of a command that exits", "ms"),
    ("exec", "exec into a running instance", "ms"),
    ("down", "teardown", "ms"),
    ("memory", "host memory per instance", "KiB"),
]


class Ctx:
    """What targets get: the user's config, scratch space and the commands to run."""

    def __init__(self, bundle: str, config: dict, tmp: str, *, idle, true, init, rt_argv):
        self.bundle, self.config, self.tmp = bundle, config, tmp
        self.idle, self.true, self.init, self.rt = idle, true, init, rt_argv

    def config_copy(self) -> dict:
        return copy.deepcopy(self.config)

    def scratch(self, name: str) -> str:
        d = os.path.join(self.tmp, "".join(c if c.isalnum() else "-" for c in name))
        os.makedirs(d, exist_ok=True)
        return d

    def write_bundle(self, path: str, config: dict) -> str:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        return path

    @property
    def rootfs(self) -> str:
        return self.config["root"]["path"]

    def check_plugin(self, plugin: str, bundle: str) -> None:
        """What `rt create` would say about this bundle under `plugin`, without creating."""
        from ..errors import RtError
        from ..admission import admit
        from ..plugins import Manager
        try:
            admit(bundle, plugin, mgr=Manager().load(), runs_hooks=False, override=True)
        except (RtError, ValueError) as e:
            raise NotApplicable(getattr(e, "msg", None) or str(e))


def load_config(bundle: str) -> dict:
    from ..errors import RtError
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError as e:
        raise RtError(f"bundle {bundle}: cannot read config.json: {e.strerror}")
    except ValueError as e:
        raise RtError(f"{path}: not JSON: {e}")
    root = (config.get("root") or {}).get("path")
    if not root:
        raise RtError(f"{path}: $.root.path: a root filesystem is required")
    root = os.path.join(os.path.abspath(bundle), root)
    if not os.path.isdir(root):
        raise RtError(f"rootfs ({root}) does not exist")
    config["root"]["path"] = root
    return config


class Result:
    def __init__(self, t: BenchTarget):
        self.target = t
        self.status, self.note = "ok", t.note
        self.samples = {k: [] for k, _, _ in METRICS}
        self.memory_parts: list[dict] = []
        self.errors: dict[str, str] = {}   # metric -> last error
        self.na: dict[str, str] = {}       # metric -> why not applicable
        self.density = None

    def to_json(self) -> dict:
        t = self.target
        return {"name": t.name, "level": t.level, "peer": t.peer, "status": self.status, "note": self.note,
                "metrics": {k: summarize(v) for k, v in self.samples.items()},
                "samples": self.samples, "memory_parts": self.memory_parts,
                "not_applicable": self.na, "errors": self.errors, "density": self.density}


class Bench:
    """Collects targets (`add` is what plugins call) and measures them."""

    def __init__(self, *, runs=5, density=8, window=10.0, progress=None):
        self.targets: list[BenchTarget] = []
        self.runs, self.density_limit, self.window = runs, density, window
        self.progress = progress or (lambda msg: print(f"rt bench: {msg}", file=sys.stderr, flush=True))
        self.live: list[tuple[BenchTarget, str]] = []
        self.seq = 0

    def add(self, target: BenchTarget) -> None:
        if any(t.name == target.name for t in self.targets):
            raise ValueError(f"bench target {target.name!r} is already added")
        self.targets.append(target)

    def _iid(self, t: BenchTarget) -> str:
        self.seq += 1
        return f"rtbench-{os.getpid()}-{t.level}-{self.seq}"

    def _timed(self, r: Result, metric: str, fn, *args) -> float | None:
        if metric in r.na:
            return None
        try:
            t0 = time.perf_counter()
            fn(*args)
            dt = time.perf_counter() - t0 - r.target.overhead(metric)
        except NotApplicable as e:
            r.na[metric] = str(e) or "not applicable"
            return None
        except (Failed, OSError, ValueError) as e:
            r.errors[metric] = str(e)
            return None
        r.samples.setdefault(metric, []).append(dt * 1000)
        return dt * 1000

    def _up(self, r: Result, ctx: Ctx, iid: str, metric: str = "up") -> bool:
        self.live.append((r.target, iid))
        if self._timed(r, metric, r.target.up, ctx, iid) is None:
            self._cleanup_one(ctx, r.target, iid)
            return False
        return True

    def _cleanup_one(self, ctx, t: BenchTarget, iid: str) -> None:
        try:
            t.cleanup(ctx, iid)
        except Exception as e:  # cleanup must go on for the others
            self.progress(f"cleanup of {t.name} {iid} failed: {e}")
        if (t, iid) in self.live:
            self.live.remove((t, iid))

    def _memory(self, r: Result, ctx: Ctx, iid: str) -> dict | None:
        if "memory" in r.na:
            return None
        try:
            m = r.target.memory(ctx, iid)
        except NotApplicable as e:
            r.na["memory"] = str(e)
            return None
        except (Failed, OSError, ValueError) as e:
            r.errors["memory"] = str(e)
            return None
        return m

    def one_run(self, r: Result, ctx: Ctx) -> str:
        t, done = r.target, []
        before = dict(r.errors)
        iid = self._iid(t)
        if self._up(r, ctx, iid):
            done.append(f"up {r.samples['up'][-1]:.0f} ms")
            m = self._memory(r, ctx, iid)
            if m:
                r.samples["memory"].append(m["total_kib"])
                r.memory_parts.append(m)
                done.append(f"mem {m['total_kib'] / 1024:.1f} MiB")
            if self._timed(r, "exec", t.exec, ctx, iid) is not None:
                done.append(f"exec {r.samples['exec'][-1]:.0f} ms")
            if self._timed(r, "down", t.down, ctx, iid) is not None:
                done.append(f"down {r.samples['down'][-1]:.0f} ms")
            self._cleanup_one(ctx, t, iid)
        iid = self._iid(t)
        self.live.append((t, iid))
        if self._timed(r, "roundtrip", t.roundtrip, ctx, iid) is not None:
            done.append(f"run {r.samples['roundtrip'][-1]:.0f} ms")
        self._cleanup_one(ctx, t, iid)
        failed = [f"{k} failed: {v}" for k, v in r.errors.items() if before.get(k) != v]
        return ", ".join(done + failed) or "nothing applicable"

    def density(self, r: Result, ctx: Ctx) -> None:
        """Start instances back to back until the limit or the window; memory after each."""
        t, ids, curve = r.target, [], []
        t0 = time.perf_counter()
        try:
            while len(ids) < self.density_limit and time.perf_counter() - t0 < self.window:
                iid = self._iid(t)
                if not self._up(r, ctx, iid, metric="density"):
                    break
                ids.append(iid)
                elapsed = time.perf_counter() - t0
                mems = [self._memory(r, ctx, i) for i in ids]
                total = sum(m["total_kib"] for m in mems if m)
                curve.append({"count": len(ids), "elapsed_ms": elapsed * 1000, "total_kib": total,
                              "per_instance_kib": total / len(ids)})
                self.progress(f"{t.name}: density {len(ids)} up at {elapsed:.1f} s, "
                              f"{total / 1024 / len(ids):.1f} MiB each")
        finally:
            for iid in ids:
                self._cleanup_one(ctx, t, iid)
        r.samples.pop("density", None)
        r.density = {"limit": self.density_limit, "window_s": self.window,
                     "started_in_window": sum(1 for p in curve if p["elapsed_ms"] <= self.window * 1000),
                     "curve": curve}

    def cleanup(self, ctx) -> None:
        for t, iid in list(reversed(self.live)):
            self._cleanup_one(ctx, t, iid)

    def run(self, ctx: Ctx) -> list[Result]:
        results = [Result(t) for t in self.targets]
        active = []
        for r in results:
            why = r.target.available()
            if why:
                r.status, r.note = "skipped", why
                self.progress(f"{r.target.name}: skipped ({why})")
                continue
            try:
                r.target.prepare(ctx)
            except NotApplicable as e:
                r.status, r.note = "not applicable", str(e)
                self.progress(f"{r.target.name}: not applicable: {e}")
                continue
            except (Failed, OSError, ValueError) as e:
                r.status, r.note = "failed", str(e)
                self.progress(f"{r.target.name}: failed: {e}")
                continue
            active.append(r)
        old = signal.signal(signal.SIGTERM, _interrupt)
        try:
            for n in range(self.runs):  # interleaved, so drift in host load hits all alike
                for r in active:
                    self.progress(f"[{n + 1}/{self.runs}] {r.target.name}: {self.one_run(r, ctx)}")
            if self.density_limit > 0:
                for r in active:
                    if "up" in r.na or not r.samples["up"]:
                        continue
                    self.density(r, ctx)
        finally:
            self.cleanup(ctx)
            for r in active:
                try:
                    r.target.finish(ctx)
                except Exception as e:
                    self.progress(f"{r.target.name}: finishing failed: {e}")
            signal.signal(signal.SIGTERM, old)
        for r in active:
            if not any(r.samples.values()) and r.errors:
                r.status, r.note = "failed", "; ".join(f"{k}: {v}" for k, v in r.errors.items())
        return results


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def make_ctx(bundle: str, tmp: str, *, idle: list[str], true: list[str], init: list[str], rt_argv: list[str]) -> Ctx:
    from ..admission import load_spec
    load_spec(bundle)  # a bundle that is not valid OCI is bad input, not a per-target result
    return Ctx(os.path.abspath(bundle), load_config(bundle), tmp, idle=idle, true=true, init=init, rt_argv=rt_argv)


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="rt-bench.")


def remove_scratch(tmp: str) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
