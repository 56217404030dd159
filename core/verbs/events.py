"""`rt events [--stats] [--interval 5s] ID`: the container's cgroup statistics as runc prints
them, once (--stats) or every interval, with an `oom` event whenever the OOM killer strikes."""
import sys
import time

from .. import jsonio, status
from ..cli import need_id
from ..errors import NotFound, RtError, require_caller
from . import store

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration, as runc's --interval takes it: 5s, 500ms, 1m30s."""
    import re
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise RtError(f'invalid value "{text}" for flag -interval: parse error')
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise RtError("duration interval must be greater than 0")
    return seconds


def _event(kind: str, cid: str, data=None) -> str:
    ev = {"type": kind, "id": cid}
    if data is not None:
        ev["data"] = data
    return jsonio.dumps(ev) + "\n"


def run(g, opts, pos):
    from ..stats import oom_kills, stats
    cid = need_id(pos, "events")
    interval = duration(opts.interval)
    c = store(g).open(cid)
    status.check("events", c.status(), cid)
    cg = _cgroup(c)
    if opts.stats:
        sys.stdout.write(_event("stats", cid, stats(cg)))
        return 0
    require_caller("events streams until the container stops")
    ooms = oom_kills(cg)
    while True:
        try:
            c = store(g).open(cid)
        except NotFound:
            return 0
        if c.status() == status.STOPPED:
            return 0
        now = oom_kills(cg)
        if now > ooms:
            sys.stdout.write(_event("oom", cid))
        ooms = now
        sys.stdout.write(_event("stats", cid, stats(cg)))
        sys.stdout.flush()
        time.sleep(interval)


def _cgroup(c):
    from ..cgroups import Cgroup
    path = c.extra.get("cgroup")
    if path is None:
        raise RtError(f"events: container {c.id} has no cgroup")
    return Cgroup(path)
