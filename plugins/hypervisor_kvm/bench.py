"""rt bench at the VM level: rt hypervisor_kvm next to a bare QEMU that boots the same
kernel and initramfs with nothing of rt's on the host side (its floor)."""
import os
import shutil
import socket
import subprocess
import time

from rt.core import api

from . import guest
from .backend import DEFAULT_MEMORY_MB, choose_accel

UP_INIT = b"""#!/bin/sh
/bin/busybox mount -t devtmpfs dev /dev
echo rt-bench-up > /dev/ttyS0
exec /bin/busybox sleep 1000000
"""


class BareQemu(api.bench.BenchTarget):
    name, level, peer = "bare QEMU", "vm", True
    note = "same kernel, initramfs and machine as rt's VMs; up = its init writes to the serial port"

    def __init__(self):
        self.qemu = shutil.which("qemu-system-x86_64")
        self.procs: dict[str, tuple] = {}

    def available(self) -> str | None:
        return None if self.qemu else "qemu-system-x86_64 is not installed"

    def prepare(self, ctx) -> None:
        src = guest.default_kernel()
        self.kernel = guest.vmlinux(src)
        self.accel, _ = choose_accel("auto")
        c = guest.Cpio()  # appended to rt's archive: the kernel unpacks both
        c.file("/bench-up", UP_INIT, 0o755)
        with open(guest.initramfs(guest.kernel_version(src)), "rb") as f:
            data = f.read() + c.bytes()
        self.initrd = os.path.join(ctx.scratch(self.name), "initrd.cpio")
        with open(self.initrd, "wb") as f:
            f.write(data)

    def _argv(self, iid: str, init: str) -> list[str]:
        append = "console=ttyS0 quiet panic=-1 reboot=t"
        if self.accel == "tcg":
            append += "".join(f" {a}" for a in guest.tcg_kernel_args())
        return [self.qemu, "-name", iid, "-machine", f"microvm,accel={self.accel},acpi=on",
                "-cpu", guest.guest_cpu(self.accel), "-m", f"{DEFAULT_MEMORY_MB}M", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", self.kernel, "-initrd", self.initrd, "-append", f"{append} {init}"]

    def up(self, ctx, iid: str) -> None:
        serial, s_theirs = socket.socketpair()
        qmp, q_theirs = socket.socketpair()
        argv = self._argv(iid, "rdinit=/bench-up") + [
            "-chardev", f"socket,id=ser,fd={s_theirs.fileno()}", "-serial", "chardev:ser",
            "-chardev", f"socket,id=qmp,fd={q_theirs.fileno()}", "-mon", "chardev=qmp,mode=control"]
        p = subprocess.Popen(argv, pass_fds=[s_theirs.fileno(), q_theirs.fileno()], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        s_theirs.close()
        q_theirs.close()
        self.procs[iid] = (p, serial, qmp)
        seen, deadline = b"", time.monotonic() + 120
        serial.settimeout(1)
        while b"rt-bench-up" not in seen:
            if time.monotonic() > deadline or p.poll() is not None:
                raise api.bench.Failed(f"the guest did not come up: {seen[-200:]!r}")
            try:
                chunk = serial.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                raise api.bench.Failed("QEMU closed the serial port")
            seen += chunk

    def down(self, ctx, iid: str) -> None:
        p, serial, qmp = self.procs.pop(iid)
        try:
            f = qmp.makefile("rwb")
            f.readline()  # greeting
            f.write(b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n')
            f.flush()
            p.wait(timeout=30)
        finally:
            serial.close()
            qmp.close()
            api.bench.kill_tree(p)

    def roundtrip(self, ctx, iid: str) -> None:
        # busybox as init, told to power off: boot, userspace, and QEMU's exit
        api.bench.run(self._argv(iid, "rdinit=/bin/busybox poweroff -f") + ["-serial", "null"], timeout=300)

    def exec(self, ctx, iid: str) -> None:
        raise api.bench.NotApplicable("a bare VM has no agent to exec through")

    def memory(self, ctx, iid: str) -> dict:
        return api.bench.instance_memory(None, iid)  # QEMU is named by -name iid

    def cleanup(self, ctx, iid: str) -> None:
        entry = self.procs.pop(iid, None)
        if entry:
            entry[1].close()
            entry[2].close()
            api.bench.kill_tree(entry[0])


def targets() -> list:
    b = api.bench
    accel, why = choose_accel("auto")
    vm = b.OciTarget("rt hypervisor_kvm", b.rt_argv(), level="vm", peer=False, plugin="hypervisor_kvm")
    vm.note = f"accelerator {accel}: {why}"
    return [vm, BareQemu()]
