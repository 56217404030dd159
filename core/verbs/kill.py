from .. import status
from ..cli import need_id
from ..signals import parse_signal
from . import backend_of, store


def run(g, opts, pos):
    cid = need_id(pos, "kill")
    sig = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    with store(g).open(cid, lock=True) as c:
        status.check("kill", c.status(), cid)
        try:
            backend_of(c).kill(c, sig, all=opts.all)
        except ProcessLookupError:
            from ..errors import RtError
            raise RtError("container not running")
