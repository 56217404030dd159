import sys

from .. import jsonio, log
from ..errors import NotFound, RtError
from . import store


def run(g, opts, pos):
    st = store(g)
    rows = []
    for cid in st.ids():
        try:
            rows.append(st.open(cid).oci_state())
        except NotFound:  # deleted meanwhile
            continue
        except RtError as e:
            # One bad entry must not hide the others. runc skips it too, with a line on
            # stderr: callers read list's stdout alone (go-runc's List does).
            log.warning(f"list: skipping {e.msg}")
            sys.stderr.write(f"list: skipping {e.msg}\n")
            continue
    if opts.quiet:
        sys.stdout.write("".join(r["id"] + "\n" for r in rows))
    elif opts.format == "json":
        sys.stdout.write(jsonio.dumps(rows or None) + "\n")
    elif opts.format == "table":
        table = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        table += [(r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        for row in table:
            sys.stdout.write("".join(v.ljust(max(w + 2, 12)) for v, w in zip(row, widths)).rstrip() + "\n")
    else:
        raise RtError(f"invalid format option: {opts.format}")
