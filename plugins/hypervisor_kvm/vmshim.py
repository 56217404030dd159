"""The per-VM shim: owns QEMU and virtiofsd, speaks QMP and the agent protocol, relays the
workload's stdio, and serves rt's verbs on <state>/shim.sock. Its pid is the container's
pid: it exits with the workload's exit code, after the VM is gone.

Run as `python -I -m rt.plugins.hypervisor_kvm.vmshim STATE_DIR READY_FD GATE_FD` (backend.py
runs it under -S: shim_argv there); the plan comes through the gate. QEMU and virtiofsd get
socketpair fds, so there are no paths to race on. It imports neither json (QMP loads it once
QEMU runs) nor subprocess: they would delay QEMU's start by ~8 ms.
"""
import ctypes
import os
import select
import selectors
import signal
import socket
import sys
import time

from rt.core import api
from rt.plugins.hypervisor_kvm import wire

PR_SET_PDEATHSIG = 1
GRACE = 2.0  # after SIGKILL through the agent, before QMP quit and SIGKILL of QEMU
WINDOW = 256 << 10  # stdin bytes in flight to a guest process, until the agent acks them
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Child:
    """QEMU or virtiofsd: forked and exec'd with stdin on /dev/null, stdout and stderr
    appended to `log`, only `fds` (and 0-2) kept open, and SIGKILL when the shim dies."""

    def __init__(self, argv: list[str], fds: list[int], log: str):
        self.args, self.returncode = argv, None
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)  # closes on exec; carries errno when exec fails
        try:
            self.pid = os.fork()
            if self.pid == 0:
                code = 127
                try:
                    _die_with_parent()
                    for src, dst in ((null, 0), (out, 1), (out, 2)):
                        os.dup2(src, dst)
                    keep = sorted({0, 1, 2, err_w, *fds})
                    for lo, hi in zip(keep, keep[1:] + [1 << 20]):
                        if hi > lo + 1:
                            os.closerange(lo + 1, hi)
                    for fd in fds:
                        os.set_inheritable(fd, True)
                    os.execvp(argv[0], argv)
                except OSError as e:
                    os.write(err_w, str(e.errno).encode())
                finally:
                    os._exit(code)
            os.close(err_w)
            err_w = -1
            failed = os.read(err_r, 64)
        finally:
            for fd in (out, null, err_r, err_w):
                if fd >= 0:
                    os.close(fd)
        if failed:
            os.waitpid(self.pid, 0)
            self.returncode = 127
            e = int(failed)
            raise OSError(e, f"{argv[0]}: {os.strerror(e)}")

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; TimeoutError if it is still running after `timeout` seconds."""
        if self.poll() is None:
            if timeout is not None:
                with os.fdopen(os.pidfd_open(self.pid), "rb", buffering=0) as pidfd:
                    if not select.select([pidfd], [], [], timeout)[0]:
                        raise TimeoutError(f"{self.args[0]} is still running")
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


def console_tail(state_dir: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(state_dir, "console.log"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no console output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no console output)"


class ConsoleLog:
    """console.log in the state directory: the guest's serial console, cut back to its last
    CAP/2 bytes whenever it passes CAP. The guest is not trusted, and the state directory is
    usually on a tmpfs: a guest that floods its console must not fill the host's memory."""
    CAP = 1 << 20

    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, "console.log")
        self.f = open(self.path, "ab")

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.f.flush()
        if self.f.tell() > self.CAP:
            with open(self.path, "rb") as r:
                r.seek(-(self.CAP // 2), os.SEEK_END)
                keep = r.read()
            self.f.truncate(0)
            self.f.write(keep)
            self.f.flush()

    def close(self) -> None:
        self.f.close()


def listen(state_dir: str) -> tuple[socket.socket, str]:
    """The shim's request socket, <state>/shim.sock, for root only."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = os.path.join(state_dir, "shim.sock")
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener, path


class Failed(Exception):
    pass


def _is_int(v, lo: int = 0, hi: int = 1 << 62) -> bool:
    return type(v) is int and lo <= v <= hi


def _check_reply(op, m: dict) -> None:
    """A message from the agent has the fields its op needs, of the right types (the guest is
    not trusted; wire.safe_loads already limited the types): else ValueError."""
    ok = {"exit": lambda: _is_int(m.get("status"), 0, 255) and _is_int(m.get("stdout")) and _is_int(m.get("stderr")),
          "ack": lambda: _is_int(m.get("bytes")),
          "ps": lambda: type(m.get("pids")) is list and all(_is_int(p, 1, 1 << 22) for p in m["pids"]),
          "error": lambda: type(m.get("error")) is str,
          "hello": lambda: True, "ok": lambda: True,
          "created": lambda: _is_int(m.get("pid"), 1, 1 << 22),
          "started": lambda: "pid" not in m or _is_int(m["pid"], 1, 1 << 22)}.get(op)
    if ok is None or not ok():
        raise ValueError(f"a bad {op!r} message")


class Qmp:
    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def _line(self, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise Failed("QEMU closed its QMP socket")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        import json
        return json.loads(line)

    def call(self, command: str, timeout: float = 10.0, **args) -> dict:
        import json
        req = {"execute": command}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            reply = self._line(timeout)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise Failed(f"QMP {command}: {reply['error'].get('desc')}")

    def handshake(self, timeout: float) -> None:
        self._line(timeout)  # the greeting
        self.call("qmp_capabilities", timeout)


class Shim:
    def __init__(self, state_dir: str, ready_fd: int, plan: dict):
        self.dir, self.ready_fd, self.plan = state_dir, ready_fd, plan
        self.children: list[Child] = []
        self.qemu = None
        self.qmp = None
        self.agent = None
        self.serial = None
        self.console = ConsoleLog(state_dir)
        self.sel = selectors.DefaultSelector()
        self.dec = wire.Decoder(untrusted=True)  # frames from the guest
        self.sessions: dict[int, dict] = {}  # sid -> {"conn", "fds", ...}
        self.calls: dict[int, socket.socket] = {}  # sid of a pending control call -> its client
        self.next_sid = 1
        self.exit_code = None
        self.workload_exited = False
        self.kill_deadline = None

    # --- boot ---------------------------------------------------------------------
    def _spawn(self, cmd: list[str], fds: list[int], log: str) -> Child:
        p = Child(cmd, fds, os.path.join(self.dir, log))
        self.children.append(p)
        return p

    def boot(self) -> None:
        p = self.plan
        args = [p["qemu"], "-name", f"rt-{p['id']}", "-machine", f"microvm,accel={p['accel']},acpi=on,memory-backend=mem",
                "-object", f"memory-backend-memfd,id=mem,size={p['memory_mb']}M,share=on",
                "-cpu", p["cpu"], "-m", f"{p['memory_mb']}M", "-smp", str(p["cpus"]),
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-kernel", p["kernel"], "-initrd", p["initrd"], "-append", p["append"],
                "-global", "virtio-mmio.force-legacy=off", "-device", "virtio-serial-device,max_ports=2",
                "-device", "virtio-balloon-device"]  # `update` shrinks the guest through it
        # max_ports=2 (port 0 is kept for a console, 1 is the agent's): the default 31 ports
        # are 64 virtqueues that the guest's driver sets up at boot, 10 ms under TCG
        fds = []

        def pair() -> int:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            fds.append(theirs.fileno())
            keep.append(theirs)
            return ours, theirs.fileno()
        keep: list[socket.socket] = []
        agent, afd = pair()
        args += ["-chardev", f"socket,id=agent,fd={afd}", "-device", "virtserialport,chardev=agent,name=rt.agent"]
        qmp, qfd = pair()
        args += ["-chardev", f"socket,id=qmp,fd={qfd}", "-mon", "chardev=qmp,mode=control"]
        self.serial, sfd = pair()
        self.serial.setblocking(False)
        args += ["-chardev", f"socket,id=ser,fd={sfd}", "-serial", "chardev:ser"]
        listeners = []
        for share in p["shares"]:
            # virtiofsd accepts on the fd it gets: give it a listener that already holds
            # QEMU's connection in its backlog (an autobound abstract address, never a path)
            theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs.bind("")
            theirs.listen(1)
            listeners.append((share, theirs))
            ours = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.connect(theirs.getsockname())
            keep.append(ours)
            fds.append(ours.fileno())
            args += ["-chardev", f"socket,id={share['tag']},fd={ours.fileno()}",
                     "-device", f"vhost-user-fs-device,chardev={share['tag']},tag={share['tag']}"]
        if p.get("tap"):
            args += ["-netdev", f"tap,id=net0,ifname={p['tap']},script=no,downscript=no",
                     "-device", f"virtio-net-device,netdev=net0,mac={p['mac']}"]
        self.qemu = self._spawn(args, fds, "qemu.log")  # first: virtiofsd starts while QEMU sets up
        for s in keep:
            s.close()
        for share, theirs in listeners:
            self._spawn([p["virtiofsd"], f"--fd={theirs.fileno()}", "-o", f"source={share['path']}",
                         "-o", f"cache={share.get('cache', 'auto')}", "-o", "xattr"], [theirs.fileno()], "virtiofsd.log")
            theirs.close()
        self.qmp = Qmp(qmp)
        deadline = time.monotonic() + p["boot_timeout"]
        try:
            self.qmp.handshake(p["boot_timeout"])
        except (OSError, Failed, ValueError) as e:
            raise Failed(f"QEMU did not start: {e}: {self._log_tail('qemu.log')}")
        self.agent = agent
        # sent before the hello: QEMU holds it until the agent opens its port, which saved
        # ~3 ms of round trip (hello to created: 26 -> 23 ms)
        self.agent.sendall(wire.msg(dict(p["create"], op="create")))
        hello = self._agent_reply(0, deadline, "the guest agent did not come up")
        if hello.get("op") != "hello":
            raise Failed(f"unexpected first message from the agent: {hello}")
        created = self._agent_reply(0, deadline + 30, "the guest agent did not create the container")
        if created.get("op") != "created":
            raise Failed(created.get("error", str(created)))

    def _log_tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip()
        except OSError:
            return ""

    def _on_serial(self) -> None:
        """Move what the guest wrote to its serial console into console.log."""
        while self.serial is not None:
            try:
                data = self.serial.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._unwatch(self.serial)
                self.serial.close()
                self.serial = None
                return
            self.console.write(data)

    def _agent_reply(self, sid: int, deadline: float, what: str) -> dict:
        """Block for the agent's next message on `sid` during boot (nothing else runs yet)."""
        while True:
            self._on_serial()
            left = deadline - time.monotonic()
            if left <= 0 or self.qemu.poll() is not None:
                why = "timed out" if self.qemu.poll() is None else f"QEMU exited with {self.qemu.returncode}"
                raise Failed(f"{what} ({why}); guest console:\n{console_tail(self.dir)}")
            ready, _, _ = select.select([self.agent, *([self.serial] if self.serial else [])], [], [], min(left, 0.5))
            if self.agent not in ready:
                continue
            data = self.agent.recv(65536)
            if not data:
                raise Failed(f"{what} (the agent port closed); guest console:\n{console_tail(self.dir)}")
            try:
                for kind, got_sid, payload in self.dec.feed(data):
                    if kind == wire.MSG and got_sid == sid:
                        _check_reply(payload.get("op"), payload)
                        return payload
                    self._from_agent(kind, got_sid, payload)
            except ValueError as e:  # the guest is not trusted
                raise Failed(f"{what}: the agent broke the protocol ({e})")

    # --- running ------------------------------------------------------------------
    def _send(self, obj: dict, sid: int = 0) -> None:
        self.agent.sendall(wire.msg(obj, sid))

    def _from_agent(self, kind: int, sid: int, payload) -> None:
        if kind in (wire.STDOUT, wire.STDERR):
            s = self.sessions.get(sid)
            fd = (s["fds"][1 if kind == wire.STDOUT else 2]) if s else None
            if fd is not None:
                try:
                    wire.write_all(fd, payload)
                    s["written"][kind] += len(payload)
                except OSError:
                    pass  # the reader went away; the workload is not stopped for it
            return
        if kind != wire.MSG:
            return
        op = payload.get("op")
        _check_reply(op, payload)
        if op == "ack":
            self._on_ack(sid, payload["bytes"])
            return
        if op == "exit":
            s = self.sessions.get(sid)
            if s is not None:
                for k in (wire.STDOUT, wire.STDERR):  # every byte the agent sent was written above
                    if s["written"][k] != payload["stdout" if k == wire.STDOUT else "stderr"]:
                        print(f"rt-vmshim: session {sid}: {s['written'][k]} of "
                              f"{payload['stdout' if k == wire.STDOUT else 'stderr']} bytes delivered",
                              file=sys.stderr)
            if sid == 0:
                self.exit_code = payload["status"]
                self.workload_exited = True
            else:
                self._end_session(sid, payload["status"])
            return
        conn = self.calls.pop(sid, None)
        if conn is not None:
            self._reply(conn, payload)
            if op == "error" and sid in self.sessions:
                self._end_session(sid, None)

    def _reply(self, conn: socket.socket, obj: dict) -> None:
        try:
            conn.sendall(wire.msg(obj))
        except OSError:
            pass

    def _end_session(self, sid: int, status) -> None:
        s = self.sessions.pop(sid, None)
        if not s:
            return
        if s.get("stdin_fd") is not None:
            self._unwatch(s["stdin_fd"])
        if status is not None:
            self._reply(s["conn"], {"op": "exit", "status": status})
        self._drop_client(s["conn"])
        for fd in set(s["fds"]):
            try:
                os.close(fd)
            except OSError:
                pass

    def _unwatch(self, fileobj) -> None:
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def _drop_client(self, conn: socket.socket) -> None:
        self._unwatch(conn)
        try:
            conn.close()
        except OSError:
            pass

    def _watch_stdin(self, fd: int, sid: int) -> None:
        """Relay `fd` to the session's stdin, at most WINDOW bytes ahead of what the process
        took (the agent acks it): one process that does not read stalls only its own stream."""
        s = self.sessions[sid]
        s["unacked"], s["paused"] = 0, False
        try:
            self.sel.register(fd, selectors.EVENT_READ, ("stdin", sid))
            os.set_blocking(fd, False)
            s["pollable"] = True
        except PermissionError:  # a regular file or /dev/null cannot be polled: read it as acks come
            s["pollable"] = False
            self._feed_file(sid)

    def _send_stdin(self, sid: int, data: bytes) -> None:
        """Forward a chunk read from the session's stdin; at EOF, close the relay."""
        s = self.sessions[sid]
        if data:
            self.agent.sendall(wire.frame(wire.STDIN, sid, data))
            s["unacked"] += len(data)
            return
        if s["pollable"]:
            self._unwatch(s["stdin_fd"])
        s["stdin_fd"] = None
        self.agent.sendall(wire.frame(wire.EOF, sid, b""))

    def _on_stdin(self, fd: int, sid: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        self._send_stdin(sid, data)
        s = self.sessions[sid]
        if s["stdin_fd"] is not None and s["unacked"] >= WINDOW:
            self._unwatch(fd)
            s["paused"] = True

    def _feed_file(self, sid: int) -> None:
        s = self.sessions[sid]
        while s["stdin_fd"] is not None and s["unacked"] < WINDOW:
            try:
                data = os.read(s["stdin_fd"], 65536)
            except OSError:
                data = b""
            self._send_stdin(sid, data)

    def _on_ack(self, sid: int, n: int) -> None:
        s = self.sessions.get(sid)
        if s is None or "unacked" not in s:
            return
        s["unacked"] -= n
        if s["stdin_fd"] is None or s["unacked"] >= WINDOW:
            return
        if not s["pollable"]:
            self._feed_file(sid)
        elif s["paused"]:
            s["paused"] = False
            self.sel.register(s["stdin_fd"], selectors.EVENT_READ, ("stdin", sid))

    def _on_client(self, conn: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            for sid, s in list(self.sessions.items()):
                if s["conn"] is conn:  # the exec waiter died: its process loses its stdio
                    self._send({"op": "signal", "target": sid, "sig": signal.SIGHUP}, sid)
                    self._end_session(sid, None)
            self._drop_client(conn)
            return
        for _, _, req in wire.Decoder().feed(data):
            self._request(conn, req, fds)

    def _request(self, conn: socket.socket, req: dict, fds: list[int]) -> None:
        op = req.get("op")
        try:
            if op in ("start", "ps", "signal", "balloon"):
                sid = self._sid()
                self.calls[sid] = conn
                self._send(dict(req, target=0), sid)
                if op == "signal" and req["sig"] == signal.SIGKILL and self.kill_deadline is None:
                    self.kill_deadline = time.monotonic() + GRACE
                if op == "start" and self.sessions[0].get("stdin_fd") is not None:
                    self._watch_stdin(self.sessions[0]["stdin_fd"], 0)
            elif op == "memory":  # the guest's size, through the balloon (the agent loaded its driver)
                self.qmp.call("balloon", value=int(req["bytes"]))
                self._reply(conn, {"op": "ok"})
            elif op in ("pause", "resume"):
                self.qmp.call("stop" if op == "pause" else "cont")
                self._reply(conn, {"op": "ok"})
            elif op == "exec":
                sid = self._sid()
                self.sessions[sid] = {"conn": conn, "fds": fds, "stdin_fd": fds[0],
                                      "written": {wire.STDOUT: 0, wire.STDERR: 0}}
                self.calls[sid] = conn
                self._send({"op": "exec", "process": req["process"]}, sid)
                self._watch_stdin(fds[0], sid)
            elif op == "resize":  # from an exec waiter whose host pty changed size
                for sid, sess in self.sessions.items():
                    if sess["conn"] is conn:
                        self._send({"op": "resize", "rows": req["rows"], "cols": req["cols"]}, sid)
            else:
                self._reply(conn, {"op": "error", "error": f"unknown request {op!r}"})
        except (OSError, Failed, KeyError) as e:
            self._reply(conn, {"op": "error", "error": f"{op}: {e}"})

    def _follow_size(self, last):
        import fcntl
        import termios
        try:
            raw = fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8))
        except OSError:
            return last
        size = (int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little"))
        if size != last and size[0] and size[1]:
            self._send({"op": "resize", "rows": size[0], "cols": size[1]}, 0)
        return size

    def _sid(self) -> int:
        self.next_sid += 1
        return self.next_sid

    def serve(self) -> int:
        listener, path = listen(self.dir)
        stdin = 0 if self.plan["stdin"] else None
        self.sessions[0] = {"conn": None, "fds": (stdin, 1, 2), "stdin_fd": stdin,
                            "written": {wire.STDOUT: 0, wire.STDERR: 0}}
        if stdin is None:
            self.agent.sendall(wire.frame(wire.EOF, 0, b""))
        self.agent.setblocking(True)
        self.agent.settimeout(None)
        self.sel.register(self.agent, selectors.EVENT_READ, ("agent",))
        self.sel.register(listener, selectors.EVENT_READ, ("listen",))
        if self.serial is not None:
            self.sel.register(self.serial, selectors.EVENT_READ, ("serial",))
        qemu_fd = os.pidfd_open(self.qemu.pid)
        self.sel.register(qemu_fd, selectors.EVENT_READ, ("qemu",))
        api.frames.send(self.ready_fd, {"ok": True, "qemu": self.qemu.pid})
        os.close(self.ready_fd)
        size = None
        while self.exit_code is None:
            timeout = None if self.kill_deadline is None else max(0.0, self.kill_deadline - time.monotonic())
            if self.plan.get("tty"):  # follow the host pty's size (the console socket's holder sets it)
                size = self._follow_size(size)
                timeout = 0.25 if timeout is None else min(timeout, 0.25)
            events = self.sel.select(timeout)
            if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline:
                self.exit_code = 128 + signal.SIGKILL  # the agent did not deliver it in time
                break
            for key, _ in events:
                what = key.data
                if what[0] == "agent":
                    data = self.agent.recv(65536)
                    if not data:
                        self.exit_code = 128 + signal.SIGKILL
                        break
                    try:
                        for frame in self.dec.feed(data):
                            self._from_agent(*frame)
                    except ValueError as e:  # the guest is not trusted
                        print(f"rt-vmshim: the guest agent broke the protocol ({e}); stopping the VM",
                              file=sys.stderr)
                        self.exit_code = 128 + signal.SIGKILL
                        break
                elif what[0] == "serial":
                    self._on_serial()
                elif what[0] == "listen":
                    conn, _ = listener.accept()
                    self.sel.register(conn, selectors.EVENT_READ, ("client", conn))
                elif what[0] == "client":
                    self._on_client(what[1])
                elif what[0] == "stdin":
                    self._on_stdin(key.fd, what[1])
                elif what[0] == "qemu":
                    self.qemu.wait()
                    self.exit_code = 128 + signal.SIGKILL  # the VM went away under us
                    break
        listener.close()
        os.unlink(path)
        return self.exit_code

    def shutdown(self) -> None:
        """After the workload's exit, SIGKILL QEMU and virtiofsd: the guest has nothing to
        flush (its root and binds are virtio-fs, written through on the host), and QMP quit
        cost ~4 ms of QEMU's own clean-up. On every other path: QMP quit, then SIGKILL."""
        if not self.workload_exited and self.qemu and self.qemu.poll() is None and self.qmp:
            t0 = time.monotonic()
            try:
                self.qmp.call("quit", timeout=1.0)
                self.qemu.wait(timeout=max(0.05, 1.0 - (time.monotonic() - t0)))
            except (OSError, Failed, ValueError, TimeoutError):
                pass
        for p in self.children:
            p.kill()
        for p in self.children:
            p.wait()
        self._on_serial()  # what QEMU wrote before it went
        self.console.close()


def run_shim(cls) -> None:
    """Once `create` has put us in the container's cgroup (so QEMU and virtiofsd start
    inside it), it sends the plan through GATE_FD (one api.frames frame; EOF alone: exit). Boot with
    `cls(state_dir, ready_fd, plan)`, report to the waiting `create`, serve until the
    workload ends, and exit with its code; the VM is torn down on every path."""
    state_dir, ready_fd, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        plan = api.frames.recv(gate)
    except (EOFError, ValueError):
        plan = None
    os.close(gate)
    if plan is None:
        os._exit(1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    shim = cls(state_dir, ready_fd, plan)
    code = 255
    try:
        try:
            shim.boot()
        except (Failed, OSError) as e:
            try:
                api.frames.send(ready_fd, {"ok": False, "error": str(e)})
            except OSError:
                pass
            code = 1
        else:
            code = shim.serve()
    finally:
        shim.shutdown()
    os._exit(code)


def main() -> None:
    run_shim(Shim)


if __name__ == "__main__":
    main()
