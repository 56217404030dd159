"""`rt stop ID [--timeout S]`: halt through the init, then kill what is left."""
import os
import time

from rt.core import api

from .settings import decode

USAGE = "usage: rt stop [--timeout SECONDS] CONTAINER_ID"


def halt_signal(pid: int, configured: str | None) -> int:
    """systemd halts on SIGRTMIN+3; sysvinit and busybox init on SIGPWR."""
    import signal
    if configured:
        return api.parse_signal(configured)
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        exe = ""
    return signal.SIGRTMIN + 3 if exe == "systemd" else signal.SIGPWR


def stop(g, args) -> int:
    timeout, rest = None, list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("-t", "--timeout") and rest:
            timeout = rest.pop(0)
        elif flag.startswith("--timeout="):
            timeout = flag.split("=", 1)[1]
        else:
            raise api.RtError(f"stop: unknown flag {flag}\n{USAGE}")
    if len(rest) != 1:
        raise api.RtError(USAGE)
    c = api.open_container(g, rest[0], lock=True)
    try:
        if c.record.get("plugin") != "lxc_system":
            raise api.RtError(f"stop: {c.id} is not a system container (plugin {c.record.get('plugin')})")
        if not c.alive():
            return 0
        _, system = decode(c.record.get("annotations"))
        try:
            wait = float(timeout) if timeout is not None else system.stop_timeout
        except ValueError:
            raise api.RtError(f"stop: --timeout must be a number of seconds, got {timeout!r}")
        os.kill(c.pid, halt_signal(c.pid, system.stop_signal))
        deadline = time.monotonic() + wait
        while c.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if c.alive():
            api.backend_of(c).kill(c, 9, all=True)
            deadline = time.monotonic() + 10
            while c.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        return 0
    finally:
        c.unlock()
