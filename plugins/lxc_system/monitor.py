"""The console keeper of a system container, run as `python -I -S monitor.py FD STATE_DIR NOTIFY_FD`.

It receives the pty master (the container's /dev/console) on FD, keeps the last 64 KiB of
output in memory and all of it (capped) in STATE_DIR/console.log, and lets one `rt console`
client at a time attach through STATE_DIR/console.sock, and receives the init's sd_notify
messages on STATE_DIR/run-host/notify (/run/host/notify inside). It exits when the container's last
process closes the console. Only builtins: it stays resident for the container's life.
"""
import os
import select
import sys

import _socket

RING = 64 * 1024
LOG_CAP = 1024 * 1024


def receive_master(fd: int) -> int:
    s = _socket.socket(fileno=fd)
    try:
        _, anc, _, _ = s.recvmsg(256, _socket.CMSG_LEN(4))
    finally:
        s.close()
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return int.from_bytes(data[:4], sys.byteorder)
    raise SystemExit("monitor: no pty master received")


def on_notify(sock, state: str) -> None:
    """sd_notify from the init: READY=1 is recorded as <state>/ready for `start --wait-ready`."""
    try:
        data = sock.recv(4096)
    except OSError:
        return
    fields = dict(line.split(b"=", 1) for line in data.split(b"\n") if b"=" in line)
    if fields.get(b"READY") == b"1" and not os.path.exists(os.path.join(state, "ready")):
        tmp = os.path.join(state, "ready.tmp")
        with open(tmp, "wb") as f:
            f.write(fields.get(b"STATUS", b"ready") + b"\n")
        os.rename(tmp, os.path.join(state, "ready"))


def main() -> None:
    state = sys.argv[2]
    notify = _socket.socket(fileno=int(sys.argv[3]))  # bound by `create`, before the init exists
    master = receive_master(int(sys.argv[1]))
    os.set_blocking(master, False)
    log_path = os.path.join(state, "console.log")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    sock_path = os.path.join(state, "console.sock")
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(4)
    ring = bytearray()
    client = None
    written = 0
    while True:
        watch = [master, listener.fileno(), notify.fileno()] + ([client.fileno()] if client else [])
        ready, _, _ = select.select(watch, [], [])
        if notify.fileno() in ready:
            on_notify(notify, state)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                data = None
            except OSError:  # EIO: nothing holds the console any more
                break
            if data:
                ring += data
                del ring[:-RING]
                if written < LOG_CAP:
                    written += os.write(log, data[:LOG_CAP - written])
                if client:
                    try:
                        client.sendall(data)
                    except OSError:
                        client.close()
                        client = None
        if listener.fileno() in ready:
            fd, _ = listener._accept()
            conn = _socket.socket(fileno=fd)
            if client:  # one at a time, as lxc-console
                conn.sendall(b"rt console: another client is attached\r\n")
                conn.close()
            else:
                client = conn
                client.sendall(bytes(ring))
        if client and client.fileno() in ready:
            data = client.recv(65536)
            if not data:
                client.close()
                client = None
            else:
                os.write(master, data)
    listener.close()
    os.unlink(sock_path)


if __name__ == "__main__":
    main()
