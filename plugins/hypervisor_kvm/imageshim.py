"""The shim of a VM booted from a disk image (vm.image): SeaBIOS on q35, the image's own
bootloader and kernel, no agent. The VM is the workload: its serial console is the
container's stdio, `start` continues the paused CPUs, SIGKILL quits QEMU and any other
signal presses the ACPI power button (escalating to quit after rt.vm.stop_timeout).
It exits 0 after a clean guest power-off, else 137.

Run as `python -I -m rt.plugins.hypervisor_kvm.imageshim STATE_DIR READY_FD GATE_FD`, like
vmshim (the plan comes through the gate). It serves the same requests on <state>/shim.sock.
"""
import json
import os
import re
import selectors
import signal
import socket
import time

from rt.core import api
from rt.plugins.hypervisor_kvm import wire
from rt.plugins.hypervisor_kvm.vmshim import Child, ConsoleLog, Failed, Qmp, console_tail, listen, run_shim

KILLED = 128 + signal.SIGKILL


class ImageShim:
    def __init__(self, state_dir: str, ready_fd: int, plan: dict):
        self.dir, self.ready_fd, self.plan = state_dir, ready_fd, plan
        self.sel = selectors.DefaultSelector()
        self.qemu = self.qmp = self.serial = None
        self.console = ConsoleLog(state_dir)
        self.seen = b""              # console text kept for the readiness pattern
        self.waiting_start = None    # (conn, deadline) while `start` waits for readiness
        self.stop_deadline = None    # after the power button: when to quit instead
        self.guest_off = False       # a SHUTDOWN event from the guest itself
        self.exit_code = None

    def boot(self) -> None:
        p = self.plan
        ours, theirs = socket.socketpair()
        q_ours, q_theirs = socket.socketpair()
        args = [p["qemu"], "-name", f"rt-{p['id']}", "-machine", f"q35,accel={p['accel']}",
                "-cpu", p["cpu"], "-m", f"{p['memory_mb']}M",
                "-smp", str(p["cpus"]), "-nodefaults", "-no-user-config", "-display", "none", "-S",
                "-drive", f"file={p['image']},format={p['format']},if=virtio",
                "-chardev", f"socket,id=ser,fd={theirs.fileno()}", "-serial", "chardev:ser",
                "-chardev", f"socket,id=qmp,fd={q_theirs.fileno()}", "-mon", "chardev=qmp,mode=control"]
        if p.get("tap"):
            args += ["-netdev", f"tap,id=net0,ifname={p['tap']},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=net0,mac={p['mac']}"]
        self.qemu = Child(args, [theirs.fileno(), q_theirs.fileno()], os.path.join(self.dir, "qemu.log"))
        theirs.close()
        q_theirs.close()
        self.serial, self.qmp = ours, Qmp(q_ours)
        try:
            self.qmp.handshake(p["boot_timeout"])
        except (OSError, Failed, ValueError) as e:
            raise Failed(f"QEMU did not start: {e}: {_tail(os.path.join(self.dir, 'qemu.log'))}")

    # --- events ---------------------------------------------------------------------
    def _on_serial(self) -> None:
        try:
            data = self.serial.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(self.serial)
            return
        self.console.write(data)
        try:
            wire.write_all(1, data)
        except OSError:
            pass  # nobody reads the console: the VM runs on
        if self.waiting_start:
            self.seen = (self.seen + data)[-65536:]
            if re.search(self.plan["ready"].encode(), self.seen):
                self._reply(self.waiting_start[0], {"op": "ok"})
                self.waiting_start = None

    def _on_qmp(self) -> None:
        try:
            data = self.qmp.sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(self.qmp.sock)
            return
        self.qmp.buf += data
        while b"\n" in self.qmp.buf:
            line, self.qmp.buf = self.qmp.buf.split(b"\n", 1)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "SHUTDOWN" and ev.get("data", {}).get("guest"):
                self.guest_off = ev["data"].get("reason") == "guest-shutdown"

    def _on_stdin(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            self.serial.sendall(data)
        else:
            self.sel.unregister(fd)

    def _reply(self, conn: socket.socket, obj: dict) -> None:
        try:
            conn.sendall(wire.msg(obj))
        except OSError:
            pass

    def _qmp(self, command: str, **args) -> None:
        self.qmp.sock.setblocking(True)
        try:
            self.qmp.call(command, **args)
        finally:
            self.qmp.sock.setblocking(False)

    def _request(self, conn: socket.socket, req: dict) -> None:
        op = req.get("op")
        try:
            if op == "start":
                self._qmp("cont")
                if self.plan.get("ready"):
                    self.waiting_start = (conn, time.monotonic() + self.plan["boot_timeout"])
                    return
                self._reply(conn, {"op": "ok"})
            elif op == "signal":
                if req["sig"] == signal.SIGKILL:
                    self.exit_code = KILLED
                else:  # the ACPI power button; the guest decides, within stop_timeout
                    self._qmp("cont")  # a paused VM cannot see the button
                    self._qmp("system_powerdown")
                    if self.stop_deadline is None:
                        self.stop_deadline = time.monotonic() + self.plan["stop_timeout"]
                self._reply(conn, {"op": "ok"})
            elif op in ("pause", "resume"):
                self._qmp("stop" if op == "pause" else "cont")
                self._reply(conn, {"op": "ok"})
            elif op == "exec":
                self._reply(conn, {"op": "error", "error": "exec: a VM booted from a disk image has no agent "
                                   "to run processes in; use its console or network"})
            else:
                self._reply(conn, {"op": "error", "error": f"unknown request {op!r}"})
        except (OSError, Failed, KeyError) as e:
            self._reply(conn, {"op": "error", "error": f"{op}: {e}"})

    def _on_client(self, conn: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        except OSError:
            data, fds = b"", []
        for fd in fds:
            os.close(fd)
        if not data:
            self.sel.unregister(conn)
            conn.close()
            return
        for _, _, req in wire.Decoder().feed(data):
            self._request(conn, req)

    def serve(self) -> int:
        listener, path = listen(self.dir)
        self.serial.setblocking(False)
        self.qmp.sock.setblocking(False)
        self.sel.register(self.serial, selectors.EVENT_READ, "serial")
        self.sel.register(self.qmp.sock, selectors.EVENT_READ, "qmp")
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        qemu_fd = os.pidfd_open(self.qemu.pid)
        self.sel.register(qemu_fd, selectors.EVENT_READ, "qemu")
        if self.plan.get("stdin"):
            try:
                os.set_blocking(0, False)
                self.sel.register(0, selectors.EVENT_READ, "stdin")
            except (PermissionError, OSError):
                pass  # /dev/null or a file: nothing to type into the console
        api.frames.send(self.ready_fd, {"ok": True, "qemu": self.qemu.pid})
        os.close(self.ready_fd)
        while self.exit_code is None:
            deadlines = [d for d in (self.stop_deadline, self.waiting_start and self.waiting_start[1]) if d]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self.sel.select(timeout):
                what = key.data
                if what == "serial":
                    self._on_serial()
                elif what == "qmp":
                    self._on_qmp()
                elif what == "stdin":
                    self._on_stdin(0)
                elif what == "listen":
                    conn, _ = listener.accept()
                    self.sel.register(conn, selectors.EVENT_READ, conn)
                elif what == "qemu":
                    self.qemu.wait()
                    self._drain()
                    self.exit_code = 0 if self.guest_off else KILLED
                else:
                    self._on_client(what)
            now = time.monotonic()
            if self.waiting_start and now >= self.waiting_start[1]:
                self._reply(self.waiting_start[0], {"op": "error", "error": (
                    f"the image did not boot: no {self.plan['ready']!r} on its console in "
                    f"{self.plan['boot_timeout']:g} s; console:\n{console_tail(self.dir)}")})
                self.waiting_start = None
                self.exit_code = KILLED
            if self.stop_deadline and now >= self.stop_deadline and self.exit_code is None:
                self.exit_code = KILLED  # the guest ignored the power button
        listener.close()
        os.unlink(path)
        return self.exit_code

    def _drain(self) -> None:
        """The last console bytes and QMP events, written before QEMU exited."""
        for what, fn in (("serial", self._on_serial), ("qmp", self._on_qmp)):
            sock = self.serial if what == "serial" else self.qmp.sock
            while True:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        break
                except (BlockingIOError, OSError):
                    break
                fn()

    def shutdown(self) -> None:
        if self.qemu and self.qemu.poll() is None:
            try:
                self.qmp.sock.setblocking(True)
                self.qmp.call("quit", timeout=1.0)
            except (OSError, Failed, ValueError):
                pass
            try:
                self.qemu.wait(timeout=2)
            except TimeoutError:
                self.qemu.kill()
                self.qemu.wait()
        self.console.close()


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace").strip()
    except OSError:
        return ""


def main() -> None:
    run_shim(ImageShim)


if __name__ == "__main__":
    main()
