#!/usr/bin/env python3
"""Side-by-side latency/memory benchmark of OCI runtime verbs: rt vs runc vs crun.

rt is measured three ways: `rt` (warm: its resident core is up), `rt-cold` (the same, after
300 ms idle before each call) and `rt-nocore` (RT_NO_CORE=1: the in-process Python path).

Run as root:  python3 bench/verbs.py [--runs N] [--runtimes rt,rt-cold,rt-nocore,runc,crun] [--json FILE]
See bench/README.md for what each row means.
"""
import argparse
import json
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

RUNC = "/usr/sbin/runc"
CRUN = "/usr/bin/crun"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKROOTFS = os.path.join(REPO, "scripts", "mkrootfs-busybox")
TIMEOUT = 120  # seconds, per runtime invocation
DEVNULL = subprocess.DEVNULL
# crun refuses hybrid cgroups: hide cgroup2 behind an empty tmpfs in a private mount ns.
# "$0" is the wrapped program, so the same wrapper can time /bin/true for its overhead.
CRUN_WRAP = ["unshare", "-m", "sh", "-c",
             'mount -t tmpfs none /sys/fs/cgroup/unified && exec "$0" "$@"']

# Table rows: (key, label, unit).  Times are stored in ns, memory in KiB.
ROWS = [
    ("run", "run /bin/true", "ms"),
    ("create", "create", "ms"),
    ("start", "start", "ms"),
    ("state", "state", "ms"),
    ("exec", "exec /bin/true", "ms"),
    ("kill", "kill KILL", "ms"),
    ("delete", "delete", "ms"),
    ("batch", "50x create+start (total)", "ms"),
    ("rss", "VmRSS waiting process", "KiB"),
    ("pss", "PSS waiting process", "KiB"),
]


class VerbError(Exception):
    def __init__(self, runtime, cmd, rc, err):
        super().__init__(f"{runtime}: `{' '.join(cmd)}` exited {rc}: {err}")
        self.record = {"runtime": runtime, "cmd": cmd, "rc": rc, "stderr": err}


class Runtime:
    """One runtime binary with its own --root; remembers every container it made."""

    def __init__(self, name, binary, root, errfile, wrap=None, env=None, idle=0.0):
        self.name, self.binary, self.root, self.errfile = name, binary, root, errfile
        self.wrap = wrap or []      # command prefix (crun on hybrid hosts)
        self.env = env              # environment (RT_NO_CORE=1 for rt-nocore)
        self.idle = idle            # seconds of quiet before each timed call (rt-cold)
        self.overhead_ns = 0        # wrapper cost subtracted from every timed call
        self.ids = set()            # containers that may exist (for cleanup)
        self.seq = 0

    def new_id(self):
        self.seq += 1
        return f"bench-{self.name}-{self.seq}"

    def cmd(self, *args):
        return self.wrap + [self.binary, "--root", self.root, *args]

    def timed(self, *args):
        """Run one verb with stdio on /dev/null (stderr: a scratch file, never a pipe,
        since detached containers inherit it). Returns wall ns minus wrapper overhead."""
        cmd = self.cmd(*args)
        if self.idle:
            time.sleep(self.idle)
        with open(self.errfile, "w+b") as err:
            rc, dt = run_timed(cmd, err, self.env)
            if rc != 0:
                err.seek(0)
                raise VerbError(self.name, cmd, rc, err.read().decode(errors="replace").strip())
        return dt - self.overhead_ns

    def state(self, cid):
        cmd = self.cmd("state", cid)
        p = subprocess.run(cmd, stdin=DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, env=self.env)
        if p.returncode != 0:
            raise VerbError(self.name, cmd, p.returncode, p.stderr.strip())
        return json.loads(p.stdout)

    def wait_stopped(self, cid, limit=10.0):
        end = time.monotonic() + limit
        while self.state(cid)["status"] != "stopped":
            if time.monotonic() > end:
                raise VerbError(self.name, self.cmd("state", cid), 0, "not stopped after kill")
            time.sleep(0.005)

    def force_delete(self, cid):
        subprocess.run(self.cmd("delete", "--force", cid), stdin=DEVNULL, stdout=DEVNULL,
                       stderr=DEVNULL, timeout=TIMEOUT)
        self.ids.discard(cid)

    def cleanup(self):
        """Force-delete everything we made plus anything left listed under our root."""
        left = set(self.ids)
        try:
            p = subprocess.run(self.cmd("list", "-q"), stdin=DEVNULL, capture_output=True,
                               text=True, timeout=TIMEOUT)
            left |= {c for c in p.stdout.split() if c.startswith("bench-")}
        except Exception:
            pass
        for cid in sorted(left):
            try:
                self.force_delete(cid)
            except Exception as e:
                print(f"warning: cleanup of {self.name} {cid} failed: {e}", file=sys.stderr)


# ---------------------------------------------------------------- helpers

def progress(msg):
    if sys.stderr.isatty():
        print(f"\r{msg:<30}", end="" if msg else "\r", file=sys.stderr, flush=True)


def run_timed(cmd, stderr=DEVNULL, env=None):
    """(returncode, wall ns) of cmd with stdin/stdout on /dev/null.

    Not subprocess.run(timeout=...): that makes Popen.wait poll with exponential
    backoff (0.5, 1, 2, 4 ... ms), quantising every sample.  A pidfd wakes us exactly
    at exit and still enforces TIMEOUT."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(cmd, stdin=DEVNULL, stdout=DEVNULL, stderr=stderr, env=env)
    fd = os.pidfd_open(p.pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(TIMEOUT * 1000):
            p.kill()
            p.wait()
            return "timeout", time.perf_counter_ns() - t0
        rc = p.wait()
    finally:
        os.close(fd)
    return rc, time.perf_counter_ns() - t0


def sh(*cmd):
    """Short command output for the header (errors become text)."""
    try:
        p = subprocess.run(cmd, stdin=DEVNULL, capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip()
    except Exception as e:
        return f"<{e}>"


def cgroup_layout():
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, fstype = line.split()[:3]
            mounts[mnt] = fstype
    if mounts.get("/sys/fs/cgroup") == "cgroup2":
        return "unified"
    if mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        return "hybrid"
    return "legacy"


def proc_mem(pid):
    """(VmRSS, Pss) in KiB of a live process; None where unreadable."""
    rss = pss = None
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except (OSError, StopIteration):
        pass
    return rss, pss


def make_bundles(tmp):
    """One busybox rootfs, two bundles (/bin/true and sleep 1000) pointing at it."""
    rootfs = os.path.join(tmp, "rootfs")
    subprocess.run([MKROOTFS, rootfs], check=True, stdout=DEVNULL)
    spec_dir = os.path.join(tmp, "spec")
    os.mkdir(spec_dir)
    subprocess.run([RUNC, "spec"], cwd=spec_dir, check=True)
    with open(os.path.join(spec_dir, "config.json")) as f:
        base = json.load(f)
    bundles = {}
    for name, args in (("true", ["/bin/true"]), ("sleep", ["sleep", "1000"])):
        cfg = json.loads(json.dumps(base))
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args
        cfg["root"] = {"path": rootfs, "readonly": True}
        d = os.path.join(tmp, f"bundle-{name}")
        os.mkdir(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        bundles[name] = d
    return bundles


def core_pss(root):
    """PSS (KiB) of the core serving root, from its pid file."""
    try:
        with open(os.path.join(root, ".rt-core", "pid")) as f:
            return proc_mem(int(f.read()))[1]
    except (OSError, ValueError):
        return None


def soak(rt, n):
    """n `state` requests against a running container; the core's PSS before and after."""
    cid = rt.new_id()
    rt.ids.add(cid)
    try:
        rt.timed("create", "--bundle", rt.sleep_bundle, cid)
        before = core_pss(rt.root)
        t0 = time.monotonic()
        for _ in range(n):
            subprocess.run(rt.cmd("state", cid), stdin=DEVNULL, stdout=DEVNULL, check=True)
        return {"requests": n, "seconds": time.monotonic() - t0, "pss_before_kib": before,
                "pss_after_kib": core_pss(rt.root)}
    finally:
        rt.force_delete(cid)


def wrapper_overhead(n=30):
    """Median cost of CRUN_WRAP around /bin/true minus bare /bin/true, in ns."""
    def t(cmd):
        rc, ns = run_timed(cmd)
        if rc != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {rc}")
        return ns
    bare, wrapped = [], []
    for _ in range(n):
        bare.append(t(["/bin/true"]))
        wrapped.append(t(CRUN_WRAP + ["/bin/true"]))
    return int(statistics.median(wrapped) - statistics.median(bare)), bare, wrapped


def probe(rt, bundle):
    """create/start/state/delete once; returns None on success or an error text."""
    cid = rt.new_id()
    rt.ids.add(cid)
    try:
        rt.timed("create", "--bundle", bundle, cid)
        rt.timed("start", cid)
        if rt.state(cid)["status"] != "running":
            return "container not running after start"
        rt.timed("kill", cid, "KILL")
        rt.wait_stopped(cid)
        rt.timed("delete", cid)
        rt.ids.discard(cid)
        return None
    except Exception as e:
        return str(e)
    finally:
        if cid in rt.ids:
            rt.force_delete(cid)


# ---------------------------------------------------------------- measurements

def one_run(rt, bundles):
    """Rows 1, 2 and 4 for one runtime; returns {row: value}."""
    out = {}
    cid = rt.new_id()
    rt.ids.add(cid)
    out["run"] = rt.timed("run", "--bundle", bundles["true"], cid)  # rc 0 checked
    rt.ids.discard(cid)

    cid = rt.new_id()
    rt.ids.add(cid)
    try:
        out["create"] = rt.timed("create", "--bundle", bundles["sleep"], cid)
        out["rss"], out["pss"] = proc_mem(rt.state(cid)["pid"])  # process waiting for start
        out["start"] = rt.timed("start", cid)
        out["state"] = rt.timed("state", cid)
        out["exec"] = rt.timed("exec", cid, "/bin/true")
        out["kill"] = rt.timed("kill", cid, "KILL")
        rt.wait_stopped(cid)  # not timed
        out["delete"] = rt.timed("delete", cid)
        rt.ids.discard(cid)
    finally:
        if cid in rt.ids:
            rt.force_delete(cid)
    return out


def batch_run(rt, bundle, n=50):
    """n containers create+start back to back; total ns (wrapper cost removed per call)."""
    ids = []
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            cid = rt.new_id()
            rt.ids.add(cid)
            ids.append(cid)
            rt.timed("create", "--bundle", bundle, cid)
            rt.timed("start", cid)
        # timed() already subtracted the overhead from its own return; do it for the wall total
        return time.perf_counter_ns() - t0 - 2 * n * rt.overhead_ns
    finally:
        for cid in ids:  # cleanup, not timed
            rt.force_delete(cid)


# ---------------------------------------------------------------- report

def stats(vals, unit):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    scale = 1e6 if unit == "ms" else 1
    return {"n": len(vals), "min": min(vals) / scale, "median": statistics.median(vals) / scale}


def ratio(a, b, k):
    return f"{a[k] / b[k]:.2f}x" if a and b and b[k] else "-"


def table(names, st):
    head = ["measurement", "unit"]
    for n in names:
        head += [f"{n} min", f"{n} med"]
    others = [o for o in ("runc", "crun") if o in names]
    mine = [v for v in ("rt", "rt-cold", "rt-nocore") if v in names]
    for v in mine:
        for o in others:
            head.append(f"{v}/{o} med")
    rows = [head]
    for key, label, unit in ROWS:
        r = [label, unit]
        fmt = "{:.2f}" if unit == "ms" else "{:.0f}"
        for n in names:
            s = st[key].get(n)
            r += [fmt.format(s["min"]), fmt.format(s["median"])] if s else ["-", "-"]
        for v in mine:
            for o in others:
                r.append(ratio(st[key].get(v), st[key].get(o), "median"))
        rows.append(r)
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--batch-runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--runtimes", default="rt,rt-cold,rt-nocore,runc,crun")
    ap.add_argument("--core-soak", type=int, default=0, metavar="N",
                    help="after the runs, send N `state` requests to rt's core and report its PSS before and after")
    ap.add_argument("--rt", default=shutil.which("rt"), help="path of the rt executable")
    ap.add_argument("--json", metavar="FILE", help="write raw samples and stats here")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="another runc-compatible binary to measure in the same run (e.g. an older rt)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("must run as root")
    names = [n.strip() for n in a.runtimes.split(",") if n.strip()]
    binaries = {"rt": a.rt, "rt-cold": a.rt, "rt-nocore": a.rt, "runc": RUNC, "crun": CRUN}
    for spec in a.extra:
        name, _, path = spec.partition("=")
        binaries[name] = path
        names.append(name)
    for n in names:
        if n not in binaries:
            sys.exit(f"unknown runtime {n!r}")
        if not binaries[n] or not os.access(binaries[n], os.X_OK):
            sys.exit(f"{n}: executable not found ({binaries[n]}); use --rt PATH for rt")

    # SIGTERM/SIGHUP behave like Ctrl-C so the finally-block cleanup runs.
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    layout = cgroup_layout()
    notes, failures = [], []
    info = {
        "nproc": os.cpu_count(), "kernel": platform.release(), "cgroup_layout": layout,
        "python": sys.version.split()[0], "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "versions": {n: sh(binaries[n], "--version") for n in names},
        "rt_path": a.rt, "runs": a.runs, "batch_runs": a.batch_runs, "batch_size": a.batch_size,
    }
    print(f"machine: nproc={info['nproc']} kernel={info['kernel']} cgroups={layout} "
          f"loadavg={' '.join(info['loadavg_start'])}")
    for n in names:
        print(f"--- {n} ({binaries[n]}) ---\n{info['versions'][n]}")
    print()

    tmp = tempfile.mkdtemp(prefix="rt-bench-")
    rts, cores = {}, {}
    samples = {k: {} for k, _, _ in ROWS}
    try:
        bundles = make_bundles(tmp)
        for n in names:
            root = os.path.join(tmp, f"root-{n}")
            os.mkdir(root)
            wrap = CRUN_WRAP if (n == "crun" and layout == "hybrid") else None
            env = dict(os.environ, RT_NO_CORE="1") if n == "rt-nocore" else None
            rts[n] = Runtime(n, binaries[n], root, os.path.join(tmp, f"stderr-{n}"), wrap, env,
                             0.3 if n == "rt-cold" else 0.0)
            if n in ("rt", "rt-cold"):
                subprocess.run([a.rt, "--root", root, "core", "--idle-timeout", "0", "start"], check=True,
                               stdout=DEVNULL)
                cores[n] = root
                info[f"{n}_core_pss_start_kib"] = core_pss(root)

        if "crun" in rts:
            if rts["crun"].wrap:
                ov, bare, wrapped = wrapper_overhead()
                rts["crun"].overhead_ns = ov
                info["crun_wrapper"] = {"cmd": CRUN_WRAP, "overhead_ns": ov,
                                        "bare_true_ns": bare, "wrapped_true_ns": wrapped}
                notes.append(f"crun: hybrid cgroups, each crun call runs as `{shlex.join(CRUN_WRAP)} "
                             f"{CRUN} ...`; wrapper overhead {ov / 1e6:.2f} ms "
                             f"(median wrapped /bin/true - bare /bin/true) SUBTRACTED from every crun "
                             f"call ({2 * a.batch_size}x for the batch row)")
            err = probe(rts["crun"], bundles["sleep"])
            if err:
                notes.append(f"crun SKIPPED: does not work here: {err}")
                del rts["crun"]
                names.remove("crun")
        for k in samples:
            samples[k] = {n: [] for n in names}
        for rt in rts.values():
            rt.sleep_bundle = bundles["sleep"]

        # Warm-up (not recorded), then interleaved runs; the order rotates each run.
        for i in range(-1, a.runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for n in order:
                try:
                    res = one_run(rts[n], bundles)
                except VerbError as e:
                    failures.append(dict(e.record, run=i))
                    print(f"FAIL (run {i}): {e}", file=sys.stderr)
                    continue
                if i >= 0:
                    for k, v in res.items():
                        samples[k][n].append(v)
            progress(f"run {i + 1}/{a.runs}")

        for i in range(a.batch_runs):
            for n in names[i % len(names):] + names[:i % len(names)]:
                if rts[n].idle:
                    continue  # back to back is the point of this row
                try:
                    samples["batch"][n].append(batch_run(rts[n], bundles["sleep"], a.batch_size))
                except VerbError as e:
                    failures.append(dict(e.record, run=f"batch {i}"))
                    print(f"FAIL (batch {i}): {e}", file=sys.stderr)
            progress(f"batch {i + 1}/{a.batch_runs}")
        progress("")
        for n, root in cores.items():
            info[f"{n}_core_pss_end_kib"] = core_pss(root)
        if a.core_soak and "rt" in cores:
            info["core_soak"] = soak(rts["rt"], a.core_soak)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # don't let a 2nd Ctrl-C skip cleanup
        for rt in rts.values():
            rt.cleanup()
        for root in cores.values():
            subprocess.run([a.rt, "--root", root, "core", "stop"], stdout=DEVNULL, stderr=DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

    st = {k: {n: stats(samples[k][n], u) for n in names} for k, _, u in ROWS}
    info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(f"runs={a.runs} (+1 warm-up), batch: {a.batch_runs}x {a.batch_size} containers; "
          f"min / median; ratios are rt divided by the other runtime (>1 = rt slower/bigger)")
    print(table(names, st))
    notes.append("memory rows: the pid reported by `state` right after create "
                 "(the process waiting for `start`); runc: `runc init`, crun: container init, "
                 "rt: its waiting helper")
    for n in cores:
        notes.append(f"{n}: its core's PSS {info.get(f'{n}_core_pss_start_kib')} KiB after start, "
                     f"{info.get(f'{n}_core_pss_end_kib')} KiB after the runs")
    if "core_soak" in info:
        s = info["core_soak"]
        notes.append(f"core soak: {s['requests']} `state` requests in {s['seconds']:.1f} s; core PSS "
                     f"{s['pss_before_kib']} KiB before, {s['pss_after_kib']} KiB after")
    notes.append("rt: warm core; rt-cold: 300 ms idle before each call; rt-nocore: RT_NO_CORE=1, rt's "
                 "in-process Python path (through the native front end, as users run it)")
    notes.append(f"loadavg start {' '.join(info['loadavg_start'])}, end {' '.join(info['loadavg_end'])}")
    print("\nnotes:")
    for note in notes:
        print(f"  - {note}")
    if failures:
        print(f"\nFAILURES ({len(failures)}):")
        for f in failures:
            print(f"  - [{f['runtime']}, run {f['run']}] `{' '.join(f['cmd'])}` rc={f['rc']}: {f['stderr']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"info": info, "notes": notes, "failures": failures,
                       "units": {k: ("ns" if u == "ms" else "KiB") for k, _, u in ROWS},
                       "samples": samples, "stats": st}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted (containers and temp dir cleaned up)")
