"""The --console-socket side of process.terminal (runc's protocol, as conmon and containerd use it)."""
import os

from .errors import RtError


def connect(path: str | None, terminal: bool) -> int | None:
    """A connected fd for the shim to send the pty master through, or None without a terminal."""
    if not terminal:
        if path:
            raise RtError("--console-socket is only valid with process.terminal (or exec --tty)")
        return None
    if not path:
        raise RtError("cannot allocate tty if rt will detach without setting console socket")
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RtError(f"failed to connect to console socket {path}: {e.strerror}")
    fd = s.detach()
    os.set_inheritable(fd, False)
    return fd


def size_of(proc) -> tuple[int, int] | None:
    box = proc.console_size
    return (box.height, box.width) if box else None
