import os

from .. import status
from ..cli import need_id
from ..errors import RtError, require_caller
from . import backend_of, store


def supported(kind: str, backend, verb: str) -> None:
    from ..ocibackend import OciBackend
    if kind != "app_single" or not isinstance(backend, OciBackend):
        raise RtError(f"{verb} is not supported for {kind} containers (CRIU checkpoints app_single ones only)")


def run(g, opts, pos):
    cid = need_id(pos, "checkpoint")
    require_caller("criu runs as the caller's child")
    from .. import criu
    with store(g).open(cid, lock=True) as c:
        supported(c.record.get("plugin", "?"), backend_of(c), "checkpoint")
        s = c.status()
        if s not in (status.RUNNING, status.PAUSED):
            raise RtError(f"cannot checkpoint a {s} container" if s != status.STOPPED else "container not running")
        path = criu.binary(g)
        criu.check(path)
        from .. import jsonio
        try:
            with open(os.path.join(c.dir, "config.json"), "rb") as f:
                config = jsonio.loads(f.read())
        except (OSError, ValueError) as e:
            raise RtError(f"checkpoint {cid}: its config.json: {e}")
        criu.dump(c, opts, path, config)
        if not (opts.leave_running or opts.pre_dump):  # runc's: the checkpoint is all that is left
            from .delete import destroy
            destroy(c, force=True)
