"""The guest agent: PID 1 of the VM, started by rt's initramfs as `python -I -S agent.py`.

It talks to the host shim over the virtio-serial port "rt.agent" (frames of wire.py),
prepares the container root (the bundle's rootfs over virtio-fs), starts the workload at
`start`, runs `exec` sessions, forwards stdio, delivers signals and reaps every orphan.
Builtins only: os, marshal, select, _signal, fcntl (and ctypes, through confine.py, for a
workload's capabilities and seccomp). Helpers come from the initramfs's busybox.
"""
import os
import select
import sys

import _signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

BB = "/bin/busybox"
ROOT = "/run/rt/root"
SHARES = "/run/rt/shares"
PACKED = "/rt/rootfs"
TIOCSCTTY, TIOCSWINSZ, TIOCSPTLCK, TIOCGPTN = 0x540E, 0x5414, 0x40045431, 0x80045430


def log(text: str) -> None:
    os.write(2, f"rt-agent: {text}\n".encode())


def bb(*args: str) -> None:
    pid = os.posix_spawn(BB, [BB, *args], {"PATH": "/bin"})
    _, st = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(st) != 0:
        raise OSError(f"{' '.join(args)}: exit {os.waitstatus_to_exitcode(st)}")


def open_port(name: str = "rt.agent", tries: int = 500) -> int:
    for _ in range(tries):
        try:
            for port in os.listdir("/sys/class/virtio-ports"):
                with open(f"/sys/class/virtio-ports/{port}/name") as f:
                    if f.read().strip() == name:
                        return os.open(f"/dev/{port}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            pass
        select.select([], [], [], 0.01)
    raise OSError(f"no virtio port named {name}")


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    fcntl.ioctl(fd, TIOCSWINSZ, rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))


# --- the container root --------------------------------------------------------------
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "core": "/proc/kcore"}
PLAIN_OPTS = {"rbind", "bind", "rprivate", "private", "rslave", "slave", "rshared", "shared", "runbindable",
              "unbindable", "rro", "rrw", "idmap", "ridmap", "tmpcopyup", "defaults"}


def inside(dest: str) -> str:
    parts = [p for p in dest.split("/") if p not in ("", ".", "..")]
    return os.path.join(ROOT, *parts)


def populate_dev(dev: str) -> None:
    for name, (major, minor) in DEVICES.items():
        path = os.path.join(dev, name)
        if not os.path.exists(path):
            os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))
            os.chmod(path, 0o666)
    for name, target in DEV_LINKS.items():
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    for d in ("pts", "shm"):
        os.makedirs(os.path.join(dev, d), exist_ok=True)


def prepare_root(spec: dict) -> None:
    os.makedirs(ROOT, exist_ok=True)
    if spec.get("packed"):  # the rootfs came inside the initrd
        bb("mount", "--bind", PACKED, ROOT)
    else:
        bb("mount", "-t", "virtiofs", "rt0", ROOT)
    for tag in spec["shares"]:
        os.makedirs(os.path.join(SHARES, tag), exist_ok=True)
        bb("mount", "-t", "virtiofs", tag, os.path.join(SHARES, tag))
    for m in spec["mounts"]:
        dest = inside(m["destination"])
        opts = [o for o in m["options"] if o not in PLAIN_OPTS]
        if m.get("share"):
            src = os.path.join(SHARES, m["share"], m["sub"])
            if not os.path.exists(dest):
                if os.path.isdir(src):
                    os.makedirs(dest, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    open(dest, "a").close()
            bb("mount", "--bind", src, dest)
            if "ro" in opts:
                bb("mount", "-o", "remount,bind,ro", dest)
            continue
        kind = m["type"]
        if kind == "cgroup":
            kind = "cgroup2"
        os.makedirs(dest, exist_ok=True)
        try:
            bb("mount", "-t", kind, "-o", ",".join(opts) or "defaults", m.get("source") or kind, dest)
        except OSError as e:
            if kind in ("cgroup2", "mqueue"):
                log(f"skipped {m['destination']}: {e}")  # optional in a guest kernel
                continue
            raise
        if m["destination"] == "/dev" and kind in ("tmpfs", "devtmpfs"):
            populate_dev(dest)
    if spec.get("hostname"):
        bb("hostname", spec["hostname"])
    if spec.get("readonly"):
        bb("mount", "-o", "remount,ro", ROOT)


def configure_net(net: dict) -> None:
    bb("ip", "link", "set", "lo", "up")
    for name in os.listdir("/sys/class/net"):
        with open(f"/sys/class/net/{name}/address") as f:
            if f.read().strip() == net["mac"]:
                if name != net["ifname"]:
                    bb("ip", "link", "set", name, "name", net["ifname"])
                break
    else:
        raise OSError(f"no interface with MAC {net['mac']}")
    bb("ip", "addr", "add", net["address"], "dev", net["ifname"])
    bb("ip", "link", "set", net["ifname"], "up")
    if net.get("gateway"):
        bb("ip", "route", "add", "default", "via", net["gateway"])


# --- processes -----------------------------------------------------------------------
class Session:
    def __init__(self, sid: int):
        self.sid, self.pid, self.status = sid, 0, None
        self.stdin = self.master = None
        self.outs: dict[int, int] = {}  # fd -> STDOUT/STDERR
        self.counts = {wire.STDOUT: 0, wire.STDERR: 0}
        self.gate = None  # write end that releases a created workload
        self.pending = bytearray()  # stdin the process has not taken yet (at most the host's window)
        self.eof = False  # close stdin once pending is written


def open_pty() -> tuple[int, int]:
    """A pty from the container's own devpts, so the process's tty has a name in its /dev."""
    ptmx = os.path.join(ROOT, "dev", "pts", "ptmx")
    if not os.path.exists(ptmx):
        return os.openpty()
    import fcntl
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, bytes(4))
    n = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, bytes(4)), "little")
    return master, os.open(os.path.join(ROOT, "dev", "pts", str(n)), os.O_RDWR | os.O_NOCTTY)


def lookup(name: str, path: str) -> str:
    """execvp's search, without os.execvpe (which imports `warnings`)."""
    if "/" in name:
        if not os.path.exists(name):  # runc's words, which podman maps to 127
            raise FileNotFoundError(2, f'exec: "{name}": stat {name}: no such file or directory')
        return name
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    raise FileNotFoundError(2, f'exec: "{name}": executable file not found in $PATH')


def need_confine(p: dict) -> None:
    """Import confine (ctypes) in the agent, once, when a process has caps, nnp or seccomp:
    its forked children then have it without paying for the import each."""
    if p.get("caps") is not None or p.get("nnp") or p.get("seccomp"):
        import confine  # noqa: F401


def spawn(sid: int, p: dict, gated: bool) -> Session:
    s = Session(sid)
    if p.get("tty"):
        master, slave = open_pty()
        if p.get("rows"):
            set_winsize(master, p["rows"], p["cols"])
        child_fds = (slave, slave, slave)
        s.master, s.stdin = master, master
        s.outs = {master: wire.STDOUT}
    else:
        i_r, i_w = os.pipe()
        o_r, o_w = os.pipe()
        e_r, e_w = os.pipe()
        child_fds = (i_r, o_w, e_w)
        s.stdin, s.outs = i_w, {o_r: wire.STDOUT, e_r: wire.STDERR}
    g_r = None
    if gated:
        g_r, s.gate = os.pipe()
    pid = os.fork()
    if pid == 0:  # the workload
        try:
            os.setsid()
            for i, fd in enumerate(child_fds):
                os.dup2(fd, i)
            if p.get("tty"):
                import fcntl
                fcntl.ioctl(0, TIOCSCTTY, 0)
            if g_r is not None:
                if os.read(g_r, 1) != b"1":
                    os._exit(0)
            os.closerange(3, 65536)
            for sig in range(1, 65):
                try:
                    _signal.signal(sig, _signal.SIG_DFL)
                except (OSError, ValueError, RuntimeError):
                    pass
            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
            os.chroot(ROOT)
            os.chdir(p["cwd"] or "/")
            confine = sys.modules.get("confine")  # imported at create when the spec confines
            if confine:
                confine.before_setuid(p.get("caps"), p["uid"], p.get("nnp", False), p.get("seccomp"))
            os.setgroups(p["gids"])
            os.setgid(p["gid"])
            os.setuid(p["uid"])
            if p.get("umask") is not None:
                os.umask(p["umask"])
            env = dict(e.split("=", 1) for e in p["env"] if "=" in e)
            exe = lookup(p["args"][0], env.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
            if confine:
                confine.after_setuid(p.get("caps"), p.get("nnp", False), p.get("seccomp"))
            os.execve(exe, p["args"], env)
        except BaseException as e:  # noqa: B036 -- nothing may escape a forked child
            try:
                why = str(getattr(e, "strerror", None) or e)
                if not why.startswith("exec: "):
                    why = f"exec {p['args'][0]}: {why}"
                os.write(2, f"rt: {why}\n".encode())
            finally:
                os._exit(127 if isinstance(e, FileNotFoundError) else 126)
    s.pid = pid
    for fd in child_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if g_r is not None:
        os.close(g_r)
    for fd in s.outs:
        os.set_blocking(fd, False)
    os.set_blocking(s.stdin, False)
    return s


class Agent:
    def __init__(self, port: int):
        self.port = port
        self.sessions: dict[int, Session] = {}
        self.poll = select.poll()
        self.readers: dict[int, tuple] = {}
        self.writers: dict[int, Session] = {}  # stdin fds with pending data
        self.dec = wire.Decoder()

    def send(self, obj: dict, sid: int = 0) -> None:
        wire.write_all(self.port, wire.msg(obj, sid))

    def _mask(self, fd: int) -> None:
        mask = (select.POLLIN if fd in self.readers else 0) | (select.POLLOUT if fd in self.writers else 0)
        try:
            self.poll.modify(fd, mask) if mask else self.poll.unregister(fd)
        except FileNotFoundError:
            self.poll.register(fd, mask)
        except KeyError:
            pass

    def watch(self, fd: int, what) -> None:
        self.readers[fd] = what
        self._mask(fd)

    def unwatch(self, fd: int) -> None:
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        self._mask(fd)
        os.close(fd)

    # The host sends stdin within a window of unacknowledged bytes, and the agent acks what
    # the process took: a process that does not read its stdin stalls only its own stream.
    def ack(self, sid: int, n: int) -> None:
        if n:
            self.send({"op": "ack", "bytes": n}, sid)

    def end_stdin(self, s: Session) -> None:
        if s.stdin is not None:
            self.writers.pop(s.stdin, None)
            self._mask(s.stdin)
            if s.stdin != s.master:  # a pty's master is also its output: closed with that
                os.close(s.stdin)
        s.stdin = None
        self.ack(s.sid, len(s.pending))
        s.pending.clear()

    def feed(self, s: Session) -> None:
        done = 0
        try:
            while done < len(s.pending):
                done += os.write(s.stdin, s.pending[done:])
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: it closed its stdin; what is left is dropped
            self.ack(s.sid, done)
            del s.pending[:done]
            self.end_stdin(s)
            return
        del s.pending[:done]
        self.ack(s.sid, done)
        if s.eof and not s.pending:
            self.end_stdin(s)
            return
        if bool(s.pending) != (s.stdin in self.writers):
            if s.pending:
                self.writers[s.stdin] = s
            else:
                del self.writers[s.stdin]
            self._mask(s.stdin)

    def add(self, s: Session) -> None:
        self.sessions[s.sid] = s
        for fd, stream in s.outs.items():
            self.watch(fd, ("out", s, stream))

    def pump(self, fd: int, s: Session, stream: int, drain: bool = False) -> bool:
        """Forward what `fd` has; False at EOF (then the fd is closed)."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:  # EIO: a pty whose last slave closed
                data = b""
            if not data:
                s.outs.pop(fd, None)
                if s.master == fd:
                    s.master = s.stdin = None
                self.unwatch(fd)
                return False
            s.counts[stream] += len(data)
            wire.write_all(self.port, wire.frame(stream, s.sid, data))
            if not drain:
                return True

    def reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for s in list(self.sessions.values()):
                if s.pid == pid:
                    s.status = os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)
                    for fd, stream in list(s.outs.items()):
                        self.pump(fd, s, stream, drain=True)
                    self.end_stdin(s)
                    for fd in list(s.outs):
                        self.unwatch(fd)
                    s.outs.clear()
                    self.send({"op": "exit", "status": s.status, "stdout": s.counts[wire.STDOUT],
                               "stderr": s.counts[wire.STDERR]}, s.sid)
                    del self.sessions[s.sid]

    def handle(self, kind: int, sid: int, payload) -> None:
        s = self.sessions.get(sid)
        if kind == wire.STDIN:
            if s is not None and s.stdin is not None and not s.eof:
                s.pending += payload
                self.feed(s)
            else:
                self.ack(sid, len(payload))  # nobody takes it: the host's window must not shrink for it
            return
        if kind == wire.EOF:
            if s is not None and s.stdin is not None and s.master is None:
                s.eof = True
                self.feed(s)
            return
        op = payload.get("op")
        s = self.sessions.get(payload.get("target", sid))
        try:
            if op == "create":
                need_confine(payload["process"])
                if payload.get("net"):
                    configure_net(payload["net"])
                prepare_root(payload)
                self.add(spawn(0, payload["process"], gated=True))
                self.send({"op": "created", "pid": self.sessions[0].pid})
            elif op == "start":
                os.write(s.gate, b"1")
                os.close(s.gate)
                s.gate = None
                self.send({"op": "started"}, sid)
            elif op == "exec":
                need_confine(payload["process"])
                self.add(spawn(sid, payload["process"], gated=False))
                self.send({"op": "started", "pid": self.sessions[sid].pid}, sid)
            elif op == "signal":
                if payload.get("all"):
                    os.kill(-1, payload["sig"])  # every process but PID 1, the agent
                elif s is not None:
                    os.kill(s.pid, payload["sig"])
                self.send({"op": "ok"}, sid)
            elif op == "resize":
                if s is not None and s.master is not None:
                    set_winsize(s.master, payload["rows"], payload["cols"])
            elif op == "balloon":  # before the first memory update: the driver, once
                if not os.path.exists("/sys/module/virtio_balloon"):
                    with open("/rt/modules") as f:  # its dependencies are in already
                        (ko,) = [m for m in f.read().split() if m.endswith("/virtio_balloon.ko")]
                    bb("insmod", f"/lib/modules/{ko}")
                self.send({"op": "ok"}, sid)
            elif op == "ps":
                pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != 1
                              and os.path.exists(f"/proc/{p}/exe"))
                self.send({"op": "ps", "pids": pids}, sid)
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:
            self.send({"op": "error", "error": f"{op}: {getattr(e, 'strerror', None) or e}"}, sid)

    def run(self) -> None:
        r, w = os.pipe()
        os.set_blocking(w, False)
        os.set_blocking(r, False)
        _signal.set_wakeup_fd(w)
        _signal.signal(_signal.SIGCHLD, lambda *a: None)
        self.watch(r, ("wake",))
        self.watch(self.port, ("port",))
        self.send({"op": "hello", "version": 1})
        while True:
            for fd, ev in self.poll.poll():
                what = self.readers.get(fd) if ev & ~select.POLLOUT else None
                if what is None:
                    pass
                elif what[0] == "wake":
                    try:
                        os.read(r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                elif what[0] == "port":
                    data = os.read(self.port, 65536)
                    if not data:
                        raise OSError("the host closed the agent port")
                    for frame in self.dec.feed(data):
                        self.handle(*frame)
                else:
                    self.pump(fd, what[1], what[2])
                if ev & ~select.POLLIN and fd in self.writers:
                    self.feed(self.writers[fd])
            self.reap()


def main() -> None:
    try:
        Agent(open_port()).run()
    except BaseException as e:
        log(f"fatal: {e!r}")
        bb("poweroff", "-f")


if __name__ == "__main__":
    main()
