from .. import status
from ..cli import need_id
from . import backend_of, store


def run(g, opts, pos, verb="pause"):
    cid = need_id(pos, verb)
    with store(g).open(cid, lock=True) as c:
        status.check(verb, c.status(), cid)
        be = backend_of(c)
        be.pause(c) if verb == "pause" else be.resume(c)
        c.record["paused"] = verb == "pause"
        c.save()
