"""`rt bench BUNDLE`: what each isolation level costs for this bundle, next to its peers."""
import os
import shlex
import sys
import time

from ..cli import seconds
from ..errors import RtError


def gather(bench, plugins: list[str] | None, peers: list[str] | None) -> None:
    """Targets from the plugins' `rt_bench_targets`, then a plain one for any other backend."""
    from ..bench.targets import OciTarget, rt_argv
    from ..plugins import Manager
    mgr = Manager().load()
    if plugins:
        unknown = set(plugins) - set(mgr.registry.backends)
        if unknown:
            raise RtError(f"unknown plugin(s) {', '.join(sorted(unknown))}; installed: "
                          f"{', '.join(sorted(mgr.registry.backends))}")
    mgr.pm.hook.rt_bench_targets(bench=bench)
    covered = {getattr(t, "plugin", None) for t in bench.targets}
    for name in sorted(set(mgr.registry.backends) - covered):
        bench.add(OciTarget(f"rt {name}", rt_argv(), level="other", peer=False, plugin=name))
    keep = []
    levels = {t.level for t in bench.targets if not t.peer and (not plugins or t.plugin in plugins)}
    for t in bench.targets:
        if not t.peer and plugins and getattr(t, "plugin", None) not in plugins:
            continue
        if t.peer and (t.level not in levels or peers is not None
                       and not any(p.lower() in t.name.lower() for p in peers)):
            continue  # a peer is compared only at the levels being measured
        keep.append(t)
    bench.targets[:] = keep


def with_cores(bench, modes: list[str]) -> None:
    """rt's rows: with a warm resident core ("warm") and in-process ("none", rt-py)."""
    import copy
    from ..bench.targets import OciTarget, rt_argv, rt_py_argv
    bad = set(modes) - {"warm", "none"}
    if bad or not modes:
        raise RtError(f"--core takes warm, none or both, got {','.join(modes) or 'nothing'}")
    out = []
    for t in bench.targets:
        if t.peer or not isinstance(t, OciTarget) or t.argv != rt_argv():
            out.append(t)
            continue
        if "warm" in modes:
            t.core = True
            out.append(t)
        if "none" in modes:
            alone = copy.copy(t)
            alone.argv, alone.core = rt_py_argv(), False
            if "warm" in modes:
                alone.name = f"{t.name} (in-process)"
            out.append(alone)
    bench.targets[:] = out


def run(g, opts, pos):
    from ..errors import require_caller
    require_caller("bench starts and times its own processes")
    from ..bench import report
    from ..bench.runner import Bench, make_ctx, remove_scratch, scratch_dir
    from ..bench.targets import rt_argv
    bundle = pos[0] if pos else "."
    if len(pos) > 1:
        raise RtError(f"bench takes one bundle, got {len(pos)}: {' '.join(pos)}")
    if opts.runs < 1:
        raise RtError("--runs must be at least 1")
    if opts.density < 0:
        raise RtError("--density must be 0 (skip) or more")
    window = seconds(opts.window, "--window")
    for flag in ("command", "idle", "init"):
        if not shlex.split(opts[flag]):
            raise RtError(f"--{flag} must not be empty")
    if os.geteuid() != 0:
        raise RtError("rt bench needs root (it creates containers, cgroups and VMs)")
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s is not None else None
    bench = Bench(runs=opts.runs, density=opts.density, window=window)
    gather(bench, split(opts.plugins), split(opts.peers))
    with_cores(bench, split(opts.core) or [])
    outdir = opts.output or "rt-bench"
    tmp = scratch_dir()
    try:
        ctx = make_ctx(bundle, tmp, idle=shlex.split(opts.idle), true=shlex.split(opts.command),
                       init=shlex.split(opts.init), rt_argv=rt_argv())
        bench.progress(f"{len(bench.targets)} targets, {opts.runs} runs, density up to {opts.density} "
                       f"in {window:g} s; results in {outdir}/")
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results = bench.run(ctx)
    except KeyboardInterrupt:
        print("rt bench: interrupted; every instance was removed", file=sys.stderr)
        return 130
    finally:
        remove_scratch(tmp)
    doc = {"rt_bench": 1, "started": started, "bundle": os.path.abspath(bundle), "runs": opts.runs,
           "idle": ctx.idle, "command": ctx.true, "host": host_info(),
           "targets": [r.to_json() for r in results]}
    os.makedirs(outdir, exist_ok=True)
    report.write_json(doc, os.path.join(outdir, "results.json"))
    text = report.table(doc)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(text)
    drawn = report.charts(doc, outdir)
    if opts.json:
        import json
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text)
    if isinstance(drawn, str):
        print(f"rt bench: {drawn}", file=sys.stderr)
    else:
        print(f"rt bench: wrote {outdir}/results.json, table.txt and "
              f"{', '.join(os.path.basename(p) for p in drawn)}", file=sys.stderr)
    return 0


def host_info() -> dict:
    import platform
    info = {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        with open("/proc/meminfo") as f:
            info["mem_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    from ..cgroups import Layout
    try:
        info["cgroups"] = Layout.detect().mode
    except OSError:
        pass
    return info
