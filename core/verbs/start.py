from .. import status
from ..cli import need_id, seconds
from ..errors import RtError, require_caller
from . import backend_of, store


def do_start(c) -> None:
    """Release the container, then run poststart hooks (their failures are only logged)."""
    backend_of(c).start(c)
    poststart = c.record.get("hooks", {}).get("poststart")
    if poststart:
        from .. import hooks
        hooks.run("poststart", poststart, hooks.state_json(c.record, c.id, "running", c.pid), fatal=False)


def run(g, opts, pos):
    cid = need_id(pos, "start")
    with store(g).open(cid, lock=True) as c:
        s = c.status()
        if s == status.STOPPED:
            raise RtError("cannot start a container that has stopped")
        status.check("start", s, cid)
        if c.record.get("hooks", {}).get("poststart"):
            require_caller("poststart hooks run in the caller's process")
        timeout = seconds(opts.ready_timeout, "--ready-timeout") if opts.wait_ready else 0
        do_start(c)
        if opts.wait_ready:
            backend_of(c).wait_ready(c, timeout)
