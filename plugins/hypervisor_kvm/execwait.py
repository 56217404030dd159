"""`rt exec` into a VM: a small host process stands in for the guest process. It hands its
stdio (or a host pty, with --tty) to the VM shim and exits with the guest process's exit
code, so clients that wait for the exec pid (conmon, containerd, `rt exec` itself) see it."""
import os
import socket

from . import wire

TCSANOW = 0


def _raw(fd: int) -> None:
    import termios
    import tty
    tty.setraw(fd, TCSANOW)
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST  # the guest's pty already did output processing
    termios.tcsetattr(fd, TCSANOW, attrs)


def _winsize(fd: int) -> tuple[int, int]:
    import fcntl
    import termios
    raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8))
    return int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little")


def spawn_waiter(state_dir: str, process: dict, console: int | None) -> int:
    """Fork the waiter; returns its pid once the shim has started the process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        if console is not None:
            os.close(console)
        report = os.read(r, 4096)
        os.close(r)
        if report != b"ok":
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            from rt.core.api import RtError
            raise RtError(f"exec failed: {report.decode(errors='replace') or 'the exec waiter died'}")
        return pid
    code = 255
    try:
        os.close(r)
        fds = [0, 1, 2]
        if console is not None:
            import fcntl
            import termios
            master, slave = os.openpty()
            if process.get("rows"):
                fcntl.ioctl(master, termios.TIOCSWINSZ,
                            process["rows"].to_bytes(2, "little") + process["cols"].to_bytes(2, "little") + bytes(4))
            _raw(slave)
            csock = socket.socket(fileno=console)
            socket.send_fds(csock, [b"/dev/ptmx"], [master])
            csock.close()
            os.close(master)
            fds = [slave, slave, slave]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.path.join(state_dir, "shim.sock"))
        except OSError:
            os.write(w, b"the container's VM is not running")
            os._exit(255)
        socket.send_fds(s, [wire.msg({"op": "exec", "process": process})], fds)
        watch = fds[0] if console is not None else None  # kept, to follow the host pty's size
        devnull = os.open("/dev/null", os.O_RDWR)
        for i in range(3):  # the guest process owns the stdio now
            os.dup2(devnull, i)
        dec = wire.Decoder()
        reported = False
        size = None
        while True:
            if watch is not None:
                import select
                if not select.select([s], [], [], 0.25)[0]:
                    now = _winsize(watch)
                    if reported and now != size and now[0]:
                        size = now
                        s.sendall(wire.msg({"op": "resize", "rows": now[0], "cols": now[1]}))
                    continue
            data = s.recv(65536)
            if not data:
                break
            for _, _, m in dec.feed(data):
                if m.get("op") == "error" and not reported:
                    os.write(w, m["error"].encode())
                    os._exit(255)
                if m.get("op") == "started" and not reported:
                    os.write(w, b"ok")
                    os.close(w)
                    reported = True
                if m.get("op") == "exit":
                    code = m["status"]
                    raise SystemExit
    except BaseException:  # noqa: B036 -- a forked child must end in _exit
        pass
    os._exit(code)
