import json
import sys

from .. import status
from ..cli import need_id
from ..errors import RtError
from . import backend_of, store


def _int(v, flag):
    try:
        return int(v)
    except ValueError:
        raise RtError(f"invalid value for {flag}: {v!r}")


def read_resources(opts) -> dict:
    res: dict = {}
    if opts.resources:
        try:
            data = sys.stdin.read() if opts.resources == "-" else open(opts.resources).read()
            res = json.loads(data)
        except OSError as e:
            raise RtError(f"update: cannot read {opts.resources}: {e.strerror}")
        except ValueError as e:
            raise RtError(f"update: invalid resources JSON: {e}")
        if not isinstance(res, dict):
            raise RtError("update: resources must be a JSON object (linux.resources)")
        import msgspec
        from rt.spec import SpecError
        from rt.spec.config import Resources
        from rt.spec.validate import validate_resources
        try:
            validate_resources(msgspec.convert(res, Resources), "$")
        except msgspec.ValidationError as e:
            raise RtError(f"update: resources: {e}")
        except SpecError as e:
            raise RtError(f"update: resources: {e.path}: {e.reason}")
    mem, cpu = res.setdefault("memory", {}) or {}, res.setdefault("cpu", {}) or {}
    if opts.memory:
        mem["limit"] = _int(opts.memory, "--memory")
    if opts.pids_limit:
        res["pids"] = {"limit": _int(opts.pids_limit, "--pids-limit")}
    for flag, key in (("cpu_shares", "shares"), ("cpu_quota", "quota"), ("cpu_period", "period")):
        if opts[flag]:
            cpu[key] = _int(opts[flag], "--" + flag.replace("_", "-"))
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if opts.cpuset_mems:
        cpu["mems"] = opts.cpuset_mems
    res["memory"], res["cpu"] = mem, cpu
    return res


def run(g, opts, pos):
    cid = need_id(pos, "update")
    res = read_resources(opts)
    with store(g).open(cid, lock=True) as c:
        status.check("update", c.status(), cid)
        try:
            backend_of(c).update(c, res)
        except OSError as e:
            raise RtError(f"update: {e.strerror}: {e.filename}")
