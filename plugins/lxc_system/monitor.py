"""The console keeper of a system container:
`python -I -S monitor.py FD STATE_DIR NOTIFY_FD [-- REBOOT_COMMAND...]`.

It receives the pty master (the container's /dev/console) on FD, keeps the last 64 KiB of
output in memory and all of it (capped) in STATE_DIR/console.log, and lets one `rt console`
client at a time attach through STATE_DIR/console.sock, and receives the init's sd_notify
messages on STATE_DIR/run-host/notify (/run/host/notify inside). It holds the console's slave
side open too, so the console outlives moments when nothing inside has it open (systemd closes
it once journald runs), and exits when the container's init does. When it is the init's
parent (a subreaper, with a REBOOT_COMMAND), an init killed by SIGHUP asked for a reboot
(reboot(2) in a pid namespace, see pid_namespaces(7)), and it runs REBOOT_COMMAND on its way
out. Only builtins: it stays resident for the container's life.
"""
import fcntl
import os
import select
import sys

import _socket

RING = 64 * 1024
LOG_CAP = 1024 * 1024
TIOCGPTPEER = 0x5441


def receive_master(fd: int) -> tuple[int, int]:
    """(pty master, host pid of the sender: the stub that execs the init, SO_PASSCRED)."""
    s = _socket.socket(fileno=fd)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
        _, anc, _, _ = s.recvmsg(256, _socket.CMSG_SPACE(4) + _socket.CMSG_SPACE(12))
    finally:
        s.close()
    master, pid = None, 0
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            master = int.from_bytes(data[:4], sys.byteorder)
        elif level == _socket.SOL_SOCKET and kind == _socket.SCM_CREDENTIALS:
            pid = int.from_bytes(data[:4], sys.byteorder)  # struct ucred: pid, uid, gid
    if master is None:
        raise SystemExit("monitor: no pty master received")
    return master, pid


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


def exit_status(pid: int) -> int | None:
    """The init's wait status, when we are its parent."""
    try:
        got, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return status if got == pid else None


def spawn_reboot(argv: list[str]) -> None:
    """Detached, stdio on /dev/null and our log: it deletes this container and creates it again."""
    os.posix_spawn(argv[0], argv, dict(os.environ), setsid=True, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])


def main() -> None:
    state = sys.argv[2]
    reboot = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    notify = _socket.socket(fileno=int(sys.argv[3]))  # bound by `create`, before the init exists
    master, init_pid = receive_master(int(sys.argv[1]))
    # A pty master reads EIO while no slave fd is open. systemd (PID 1) closes /dev/console
    # between messages once journald runs: taking that for the end of the container closed
    # the pty under it, and every later open of /dev/console failed with EIO (1 s of retries
    # per status line, console-getty looping, no console, `rt stop` timing out). Hold a slave
    # fd of our own, and end with the init (a pidfd) instead.
    peer = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)  # noqa: F841
    try:
        pidfd = os.pidfd_open(init_pid) if init_pid > 0 else None
    except OSError:  # already gone
        pidfd = None
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
    done = False
    while not done:
        watch = [master, listener.fileno(), notify.fileno()] + ([client.fileno()] if client else [])
        watch += [pidfd] if pidfd is not None else []
        ready, _, _ = select.select(watch, [], [])
        if pidfd is not None and pidfd in ready:  # the init exited: log what it left, then end
            done = True
            ready.append(master)
        if notify.fileno() in ready:
            on_notify(notify, state)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                data = None
            except OSError:  # EIO: no slave left (ours was hung up too)
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
    status = exit_status(init_pid) if reboot and init_pid > 0 else None
    if status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 1:  # SIGHUP
        os.write(2, b"monitor: the init rebooted; restarting the container\n")
        spawn_reboot(reboot)


if __name__ == "__main__":
    main()
