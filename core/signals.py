"""Signal names as runc accepts them: KILL, SIGKILL, kill, 9, and RTMIN+N / RTMAX-N."""
import re
import signal

from .errors import RtError

_RT = re.compile(r"RT(MIN|MAX)([+-]\d+)?")


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n <= signal.SIGRTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    t = t.removeprefix("SIG")
    m = _RT.fullmatch(t)
    if m:
        n = (signal.SIGRTMIN if m.group(1) == "MIN" else signal.SIGRTMAX) + int(m.group(2) or 0)
        if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    try:
        return int(signal.Signals["SIG" + t])
    except KeyError:
        raise RtError(f"invalid signal: {text}")
