import os
import time
from _signal import SIGKILL  # not `signal`: it imports enum

from .. import log, status
from ..cli import need_id
from ..errors import NotFound, RtError
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
    if c.record.get("hooks", {}).get("poststop"):
        from .. import hooks
        hooks.run("poststop", c.record["hooks"]["poststop"], hooks.state_json(c.record, c.id, "stopped", 0),
                  fatal=False)
    c.remove()


def run(g, opts, pos):
    cid = need_id(pos, "delete")
    try:
        c = store(g).open(cid, lock=True)
    except NotFound:
        if opts.force:  # containerd deletes twice; the second must succeed
            return 0
        raise
    with c:
        try:
            destroy(c, opts.force)
        except RtError:
            raise
        except OSError as e:
            log.warning(f"delete {cid}: {e}")
            raise RtError(f"delete {cid}: {e}")
