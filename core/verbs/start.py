from .. import status
from ..cli import need_id
from . import backend_of, store


def run(g, opts, pos):
    cid = need_id(pos, "start")
    with store(g).open(cid, lock=True) as c:
        s = c.status()
        if s == status.STOPPED:
            from ..errors import RtError
            raise RtError("cannot start a container that has stopped")
        status.check("start", s, cid)
        backend_of(c).start(c)
