"""A cgroup's statistics in runc's `events` shape (libcontainer's types.Stats), v1 and v2."""
import os

from .cgroups import V2, Cgroup


def _read(d: str | None, name: str) -> str | None:
    if d is None:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: str | None, default: int = 0) -> int:
    if text is None or text == "max":
        return 2 ** 63 - 4096 if text == "max" else default  # runc reports v1's "unlimited" this way
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return default


def _keyed(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def stats(cg: Cgroup) -> dict:
    """{"cpu", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}."""
    v2 = cg.layout.mode == V2
    return {"cpu": _cpu(cg, v2), "memory": _memory(cg, v2), "pids": _pids(cg), "blkio": {}, "hugetlb": {},
            "intel_rdt": {}, "network_interfaces": None}


def _cpu(cg: Cgroup, v2: bool) -> dict:
    if v2:
        st = _keyed(_read(cg._dir("cpu"), "cpu.stat"))
        usage = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
                 "user": st.get("user_usec", 0) * 1000}
    else:
        d = cg._dir("cpuacct")
        percpu = [int(x) for x in (_read(d, "cpuacct.usage_percpu") or "").split()]
        ticks = _keyed(_read(d, "cpuacct.stat"))
        ns = 10 ** 9 // (os.sysconf("SC_CLK_TCK") or 100)
        usage = {"total": _int(_read(d, "cpuacct.usage")), "percpu": percpu,
                 "kernel": ticks.get("system", 0) * ns, "user": ticks.get("user", 0) * ns}
        st = _keyed(_read(cg._dir("cpu"), "cpu.stat"))
    throttling = {}
    if st.get("nr_periods"):
        throttling = {"periods": st["nr_periods"], "throttled_periods": st.get("nr_throttled", 0),
                      "throttled_time": st.get("throttled_time", st.get("throttled_usec", 0) * 1000)}
    return {"usage": usage, "throttling": throttling}


def _memory(cg: Cgroup, v2: bool) -> dict:
    d = cg._dir("memory")
    if v2:
        usage = {"usage": _int(_read(d, "memory.current")), "limit": _int(_read(d, "memory.max")),
                 "max": _int(_read(d, "memory.peak")), "failcnt": _keyed(_read(d, "memory.events")).get("max", 0)}
        swap = {"usage": _int(_read(d, "memory.swap.current")), "limit": _int(_read(d, "memory.swap.max"))}
    else:
        def entry(prefix: str) -> dict:
            return {"usage": _int(_read(d, f"{prefix}usage_in_bytes")), "limit": _int(_read(d, f"{prefix}limit_in_bytes")),
                    "max": _int(_read(d, f"{prefix}max_usage_in_bytes")), "failcnt": _int(_read(d, f"{prefix}failcnt"))}
        usage, swap = entry("memory."), entry("memory.memsw.")
    return {"usage": usage, "swap": swap, "raw": _keyed(_read(d, "memory.stat"))}


def _pids(cg: Cgroup) -> dict:
    d = cg._dir("pids")
    out = {"current": _int(_read(d, "pids.current"))}
    limit = _read(d, "pids.max")
    if limit not in (None, "max"):
        out["limit"] = _int(limit)
    return out


def oom_kills(cg: Cgroup) -> int:
    """How many times the kernel's OOM killer struck in this cgroup so far."""
    d = cg._dir("memory")
    if cg.layout.mode == V2:
        return _keyed(_read(d, "memory.events")).get("oom_kill", 0)
    return _keyed(_read(d, "memory.oom_control")).get("oom_kill", 0)
