"""The foreground terminal of `rt run` and `rt exec -t` without --console-socket, on trio.

rt receives the pty master through its own console socket, then one trio task copies
stdin to the master, one copies the master to stdout, one forwards signals (SIGWINCH
resizes the pty), and one waits on a pidfd for the container process to exit. trio is
imported only here: a long-lived, concurrent job, not a short verb.
"""
import array
import os
import signal
import socket
import sys
import termios
import tty

FORWARDED = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                         signal.SIGUSR2, signal.SIGWINCH)]


class ConsoleListener:
    """A private --console-socket, in a fresh directory of its own."""

    def __init__(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="rt-console-")
        self.path = os.path.join(self.dir, "sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self, timeout: float = 30.0) -> int:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            fds = array.array("i")
            _, anc, _, _ = conn.recvmsg(256, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
        if not fds:
            raise OSError("no pty master received on the console socket")
        return fds[0]

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def copy_winsize(src: int, dst: int) -> None:
    import fcntl
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, bytes(8)))
    except OSError:
        pass


async def relay_async(master: int, pid: int, stdin: int = 0, stdout: int = 1, winsize_from: int | None = None) -> int:
    """Copy stdin -> master and master -> stdout, forward signals, until child `pid` exits."""
    import trio

    async with trio.open_nursery() as nursery:
        out_done = trio.Event()

        async def to_stdout():
            while True:
                await trio.lowlevel.wait_readable(master)
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    break
                if not data:
                    break
                os.write(stdout, data)
            out_done.set()

        async def from_stdin():
            while True:
                await trio.lowlevel.wait_readable(stdin)
                data = os.read(stdin, 65536)
                if not data:
                    return
                os.write(master, data)

        async def signals():
            with trio.open_signal_receiver(*FORWARDED) as sigs:
                async for s in sigs:
                    if s == signal.SIGWINCH:
                        if winsize_from is not None:
                            copy_winsize(winsize_from, master)
                    else:
                        try:
                            os.kill(pid, s)
                        except ProcessLookupError:
                            pass

        nursery.start_soon(to_stdout)
        nursery.start_soon(from_stdin)
        nursery.start_soon(signals)
        pidfd = os.pidfd_open(pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        with trio.move_on_after(2):  # drain what the process wrote before it exited
            await out_done.wait()
        nursery.cancel_scope.cancel()
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def relay(master: int, pid: int) -> int:
    """The foreground terminal on our own stdio; returns the container's exit code."""
    import trio

    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        copy_winsize(0, master)
        tty.setraw(0, termios.TCSANOW)  # not TCSAFLUSH: keep input typed ahead
    try:
        return trio.run(relay_async, master, pid, 0, 1, 0 if stdin_tty else None)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
        sys.stdout.flush()
