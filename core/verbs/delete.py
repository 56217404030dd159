import os
import time
from _signal import SIGKILL  # not `signal`: it imports enum

from .. import log, status
from ..cli import need_id
from ..errors import RtError, require_caller
from . import backend_of, store


def destroy(c, force: bool) -> None:
    """Stop (when allowed) and remove a container; the caller holds its lock."""
    s = c.status()
    if s in (status.RUNNING, status.PAUSED) and not force:
        status.check("delete", s, c.id)
    try:
        be = backend_of(c) if c.record.get("backend") else None
    except RtError as e:
        if not force:
            raise
        # its plugin is gone or disabled: still stop the process and drop the record
        log.warning(f"delete {c.id}: {e.msg}; removing it without its backend")
        be = None
    if s != status.STOPPED and c.pid > 0:
        try:
            be.kill(c, SIGKILL, all=True) if be is not None else os.kill(c.pid, SIGKILL)
        except (ProcessLookupError, RtError):
            pass
        if s == status.PAUSED:
            try:
                be.resume(c)
            except Exception:
                pass
        deadline = time.monotonic() + 10
        while c.alive() and time.monotonic() < deadline:
            time.sleep(0.001)
    if be is not None:
        be.delete(c)
    elif c.extra.get("cgroup"):  # without its backend, the cgroup it recorded still goes
        _drop_cgroup(c.extra["cgroup"])
    if c.record.get("hooks", {}).get("poststop"):
        from .. import hooks
        hooks.run("poststop", c.record["hooks"]["poststop"], hooks.state_json(c.record, c.id, "stopped", 0),
                  fatal=False)
    c.remove()


def _drop_cgroup(path: str) -> None:
    from ..cgroups import Cgroup
    cg = Cgroup(path)
    if cg.exists():
        try:
            if cg.frozen():  # a frozen process does not die
                cg.set_frozen(False)
        except OSError:
            pass
        cg.kill_all(SIGKILL)
    cg.destroy()


def salvage(c) -> None:
    """Remove an entry without a usable record (the caller holds its lock): a create that died
    before writing state.json, or a corrupt one. Its record named the cgroup; without it, take
    the one create would have used (linux.cgroupsPath of the saved config.json, else /rt/ID)."""
    if c.corrupt is not None or os.path.exists(os.path.join(c.dir, "config.json")):
        path = _cgroup_path(c)
        _drop_cgroup(path)
        if c.corrupt is not None:
            log.warning(f"delete {c.id}: {c.corrupt.msg}; removed cgroup {path} and the state directory "
                        "(anything else the record named is unknown)")
    c.remove()


def _cgroup_path(c) -> str:
    from .. import jsonio
    from ..cgroups import normalize_path
    try:
        with open(os.path.join(c.dir, "config.json"), "rb") as f:
            linux = jsonio.loads(f.read()).get("linux") or {}
        return normalize_path(linux.get("cgroupsPath"), c.id)
    except (OSError, ValueError, AttributeError, TypeError):
        return normalize_path(None, c.id)


def run(g, opts, pos):
    cid = need_id(pos, "delete")
    if opts.force:
        # any entry, even one a create left half-made or whose record is corrupt
        c = store(g).open_entry(cid)
        if c is None:  # containerd deletes twice; the second must succeed
            return 0
    else:
        c = store(g).open(cid, lock=True)
    with c:
        if c.record and c.record.get("hooks", {}).get("poststop"):
            require_caller("poststop hooks run in the caller's process")
        try:
            if c.corrupt is None and c.record:
                destroy(c, opts.force)
            else:
                salvage(c)
        except RtError:
            raise
        except OSError as e:
            log.warning(f"delete {cid}: {e}")
            raise RtError(f"delete {cid}: {e}")
