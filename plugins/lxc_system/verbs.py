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


DETACH = b"\x01q"  # Ctrl-a q, as lxc-console


def console(g, args) -> int:
    """`rt console ID`: attach to the container's console (Ctrl-a q detaches)."""
    import select
    import socket
    import termios
    import tty
    if len(args) != 1 or args[0].startswith("-"):
        raise api.RtError("usage: rt console CONTAINER_ID   (Ctrl-a q detaches)")
    c = api.open_container(g, args[0])
    path = os.path.join(c.dir, "console.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise api.RtError(f"console: {c.id} has no console to attach to ({e.strerror})")
    is_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if is_tty else None
    if is_tty:
        tty.setraw(0, termios.TCSANOW)
        os.write(1, b"rt console: attached, Ctrl-a q detaches\r\n")
    prev = b""
    try:
        while True:
            ready, _, _ = select.select([0, s], [], [])
            if s in ready:
                data = s.recv(65536)
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data:
                    break
                if DETACH in prev[-1:] + data:
                    break
                prev = data
                s.sendall(data)
    finally:
        s.close()
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return 0
