"""`rt stop ID [--timeout S]`: halt through the init, then kill what is left."""
import os
import time

from rt.core import api

from .settings import decode

USAGE = "usage: rt stop [--timeout SECONDS] CONTAINER_ID"


def _init_exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def halt_signal(pid: int, configured: str | None) -> int:
    """systemd halts on SIGRTMIN+3; sysvinit and busybox init on SIGPWR."""
    import signal
    if configured:
        return api.parse_signal(configured)
    return signal.SIGRTMIN + 3 if _init_exe(pid) == "systemd" else signal.SIGPWR


def reboot_signal(pid: int, configured: str | None) -> int:
    """systemd reboots on SIGINT (ctrl-alt-del.target), busybox init on SIGTERM; sysvinit
    runs its inittab's ctrlaltdel entry on SIGINT (LXC's default too)."""
    import signal
    if configured:
        return api.parse_signal(configured)
    return signal.SIGTERM if _init_exe(pid) == "busybox" else signal.SIGINT


def _timeout_and_id(verb: str, args, usage: str):
    """[-t|--timeout S] ID, the flag before or after the id."""
    timeout, todo, rest = None, list(args), []
    while todo:
        flag = todo.pop(0)
        if not flag.startswith("-"):
            rest.append(flag)
        elif flag in ("-t", "--timeout") and todo:
            timeout = todo.pop(0)
        elif flag.startswith("--timeout="):
            timeout = flag.split("=", 1)[1]
        else:
            raise api.RtError(f"{verb}: unknown flag {flag}\n{usage}")
    if len(rest) != 1:
        raise api.RtError(usage)
    if timeout is not None:
        try:
            float(timeout)
        except ValueError:
            raise api.RtError(f"{verb}: --timeout must be a number of seconds, got {timeout!r}")
    return timeout, rest[0]


def _system(c, verb: str) -> None:
    if c.record.get("plugin") != "lxc_system":
        raise api.RtError(f"{verb}: {c.id} is not a system container (plugin {c.record.get('plugin')})")


REBOOT_USAGE = "usage: rt reboot [--timeout SECONDS] CONTAINER_ID"


def reboot(g, args) -> int:
    """`rt reboot ID`: a running container is asked to reboot through its init, and its
    monitor then creates it again; a stopped one is created again from its bundle and
    started. The same id, bundle, address and MAC; a new init, namespaces and console."""
    import subprocess
    import sys
    timeout, cid = _timeout_and_id("reboot", args, REBOOT_USAGE)
    api.require_caller("reboot runs rt again as the caller")
    c = api.open_container(g, cid, lock=True)
    try:
        _system(c, "reboot")
        old = c.pid if c.alive() else 0
        if old:
            if not c.extra.get("keeper"):
                raise api.RtError(f"reboot: {cid} was created with --pid-file or --console-socket, or by `rt run` "
                                  "in the foreground: its caller reaps the init and restarts it, not rt")
            _, system = decode(c.record.get("annotations"))
            os.kill(old, reboot_signal(old, system.reboot_signal))
        bundle, plugin = c.record["bundle"], c.record.get("plugin")
    finally:
        c.unlock()
    if old:  # the monitor runs `rt reboot` again once the init has gone
        import time
        deadline = time.monotonic() + (float(timeout) if timeout is not None else 60.0)
        while time.monotonic() < deadline:
            try:
                c = api.open_container(g, cid)
                if c.pid not in (0, old) and c.alive() and c.status() == "running":
                    return 0
            except api.NotFound:
                pass
            time.sleep(0.02)
        raise api.RtError(f"reboot: {cid} did not come back within {timeout or 60} s")
    rt = [sys.executable, "-m", "rt.core", "--root", g.root]
    for step in (["delete", "--force", cid], ["--plugin", plugin, "create", "--bundle", bundle, cid],
                 ["start", cid]):
        p = subprocess.run(rt + step, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode:
            raise api.RtError(f"reboot: {' '.join(step[-2:])}: {p.stderr.strip()}")
    return 0


def stop(g, args) -> int:
    timeout, cid = _timeout_and_id("stop", args, USAGE)
    c = api.open_container(g, cid, lock=True)
    try:
        _system(c, "stop")
        if not c.alive():
            return 0
        _, system = decode(c.record.get("annotations"))
        wait = float(timeout) if timeout is not None else system.stop_timeout
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
    api.require_caller("console relays the caller's terminal")
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
