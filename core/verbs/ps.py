import sys

from .. import jsonio, status
from ..cli import need_id
from ..errors import RtError
from . import backend_of, store


def run(g, opts, pos):
    cid = need_id(pos, "ps")
    c = store(g).open(cid)
    status.check("ps", c.status(), cid)
    pids = backend_of(c).pids(c)
    if opts.format == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    if opts.format != "table":
        raise RtError(f"invalid format option: {opts.format}")
    import subprocess
    ps_args = pos[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RtError(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise RtError("couldn't find PID field in ps output")
    col = header.index("PID")
    sys.stdout.write(lines[0] + "\n")
    want = set(pids)
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in want:
            sys.stdout.write(line + "\n")
