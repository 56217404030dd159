"""Signal names as runc accepts them: KILL, SIGKILL, 9, and RTMIN+N."""
import signal

from .errors import RtError


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n <= signal.SIGRTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    t = t.removeprefix("SIG")
    if t.startswith("RTMIN") or t.startswith("RTMAX"):
        base, _, off = t[5:].partition("+") if "+" in t else (t[5:], "", "")
        minus = t.partition("-")[2] if "-" in t else ""
        n = signal.SIGRTMIN if t.startswith("RTMIN") else signal.SIGRTMAX
        try:
            n = n + int(off or 0) - int(minus or 0)
        except ValueError:
            raise RtError(f"invalid signal: {text}")
        if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
            return n
        raise RtError(f"invalid signal: {text}")
    try:
        return int(signal.Signals["SIG" + t])
    except KeyError:
        raise RtError(f"invalid signal: {text}")
