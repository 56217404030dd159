"""Signal names as runc accepts them: KILL, SIGKILL, kill, 9, and RTMIN+N / RTMAX-N.

Uses the `_signal` builtin: the `signal` module imports enum, a few ms on every `kill`.
"""
import _signal

from .errors import RtError

NAMES = {n[3:]: getattr(_signal, n) for n in dir(_signal)
         if n.startswith("SIG") and not n.startswith(("SIG_", "SIGRT")) and isinstance(getattr(_signal, n), int)}
RTMIN, RTMAX = _signal.SIGRTMIN, _signal.SIGRTMAX


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n <= RTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    t = t.removeprefix("SIG")
    if t[:5] in ("RTMIN", "RTMAX"):
        off = t[5:]
        if off and not (off[0] in "+-" and off[1:].isdigit()):
            raise RtError(f"invalid signal: {text}")
        n = (RTMIN if t[:5] == "RTMIN" else RTMAX) + int(off or 0)
        if RTMIN <= n <= RTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    if t in NAMES:
        return NAMES[t]
    raise RtError(f"invalid signal: {text}")
