import sys

from .. import jsonio
from ..cli import need_id
from . import store


def run(g, opts, pos):
    c = store(g).open(need_id(pos, "state"))
    sys.stdout.write(jsonio.dumps(c.oci_state(), indent=2) + "\n")
