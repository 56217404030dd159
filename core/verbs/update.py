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


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(v: str, flag: str, minus_one: bool = False) -> int:
    """A size as runc takes it (docker's units.RAMInBytes): 1024, 512k, 100M, 1.5g, 2GiB;
    binary multiples. -1 where it means unlimited (--memory-swap)."""
    text = v.strip()
    if minus_one and text == "-1":
        return -1
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP]?)[iI]?[bB]?", text)
    if not m:
        raise RtError(f"invalid value for {flag}: {v!r} (bytes, or a number with k, m, g, t or p)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


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
        return res  # runc: with --resources the other options are ignored
    if opts.l3_cache_schema or opts.mem_bw_schema:
        raise RtError("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by rt")
    mem, cpu = {}, {}
    for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"), ("memory_swap", "swap")):
        if opts[flag]:
            mem[key] = ram_in_bytes(opts[flag], "--" + flag.replace("_", "-"), minus_one=key == "swap")
    if opts.pids_limit:
        res["pids"] = {"limit": _int(opts.pids_limit, "--pids-limit")}
    for flag, key, name in (("cpu_shares", "shares", "--cpu-share"), ("cpu_quota", "quota", "--cpu-quota"),
                            ("cpu_period", "period", "--cpu-period"),
                            ("cpu_rt_period", "realtimePeriod", "--cpu-rt-period"),
                            ("cpu_rt_runtime", "realtimeRuntime", "--cpu-rt-runtime")):
        if opts[flag]:
            cpu[key] = _int(opts[flag], name)
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if opts.cpuset_mems:
        cpu["mems"] = opts.cpuset_mems
    if opts.blkio_weight:
        weight = _int(opts.blkio_weight, "--blkio-weight")
        if not 10 <= weight <= 1000:
            raise RtError(f"invalid value for --blkio-weight: {weight} (10 to 1000)")
        res["blockIO"] = {"weight": weight}
    if mem:
        res["memory"] = mem
    if cpu:
        res["cpu"] = cpu
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
