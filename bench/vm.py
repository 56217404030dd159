#!/usr/bin/env python3
"""hypervisor_kvm against its floor: a bare QEMU that boots the same kernel and rt's
initramfs and powers off at once, measured in the same run.

Run as root:  .venv/bin/python bench/vm.py [--runs N] [--rt .venv/bin/rt]
Rows: bare boot+poweroff; `rt run /bin/true` in a VM; QMP `quit` to QEMU exit for a
running VM; QEMU's RSS per VM (bare guest sleeping, and rt's with the agent up).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qemu_cmd(kernel, initrd, append, extra=()):
    from rt.plugins.hypervisor_kvm.guest import guest_cpu, tcg_kernel_args
    append = " ".join([*tcg_kernel_args(), append])  # the kernel command line and CPU rt use on TCG
    return ["qemu-system-x86_64", "-machine", "microvm,accel=tcg,acpi=on", "-cpu", guest_cpu("tcg"), "-m", "256M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "null",
            "-kernel", kernel, "-initrd", initrd, "-append", f"console=ttyS0 quiet panic=-1 reboot=t {append}",
            *extra]


def bare_boot(kernel, initrd) -> float:
    t = time.perf_counter()
    subprocess.run(qemu_cmd(kernel, initrd, "rdinit=/bin/busybox poweroff -f"), check=True, timeout=120, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t


def qmp_quit_and_rss(kernel, initrd) -> tuple[float, int]:
    """Boot a guest that sleeps, then time QMP quit to QEMU's exit; also its RSS (KiB)."""
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(qemu_cmd(kernel, initrd, "rdinit=/bin/busybox sleep 1000",
                                  ["-chardev", f"socket,id=q,fd={theirs.fileno()}", "-mon", "chardev=q,mode=control"]),
                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    theirs.close()
    f = ours.makefile("rwb")
    f.readline()
    f.write(b'{"execute":"qmp_capabilities"}\n')
    f.flush()
    f.readline()
    time.sleep(3)  # well past the boot, into the sleeping guest
    with open(f"/proc/{p.pid}/status") as s:
        rss = next(int(line.split()[1]) for line in s if line.startswith("VmRSS"))
    t = time.perf_counter()
    f.write(b'{"execute":"quit"}\n')
    f.flush()
    p.wait()
    return time.perf_counter() - t, rss


def rt_run(rt, bundle, root) -> float:
    t = time.perf_counter()
    p = subprocess.run([rt, "--root", root, "run", "--bundle", bundle, "bench-vm"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=180)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"rt run failed: {p.stderr.decode()}")
    return took


def rt_rss(rt, bundle, root) -> int:
    """RSS (KiB) of the QEMU under a running rt VM, and of its shim and virtiofsd."""
    subprocess.run([rt, "--root", root, "run", "-d", "--bundle", bundle, "bench-vm-rss"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=180)
    try:
        time.sleep(1)
        pids = json.loads(subprocess.run([rt, "--root", root, "ps", "--format", "json", "bench-vm-rss"],
                                         capture_output=True, check=True).stdout)
        total = {}
        for pid in pids:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/status") as f:
                total[name] = total.get(name, 0) + next(int(x.split()[1]) for x in f if x.startswith("VmRSS"))
        return total
    finally:
        subprocess.run([rt, "--root", root, "delete", "-f", "bench-vm-rss"], check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rt", default=os.path.join(REPO, ".venv", "bin", "rt"))
    args = ap.parse_args()
    from rt.plugins.hypervisor_kvm import guest
    src = guest.default_kernel()
    kernel, initrd = guest.vmlinux(src), guest.initramfs(guest.kernel_version(src))
    tmp = tempfile.mkdtemp(prefix="rt-bench-vm.")
    bundle, root = os.path.join(tmp, "bundle"), os.path.join(tmp, "state")
    os.makedirs(bundle)
    rootfs = os.path.join(REPO, ".cache", "busybox-rootfs")
    if not os.path.exists(os.path.join(rootfs, "bin", "busybox")):
        subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), rootfs], check=True)
    subprocess.run([args.rt, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"].update(terminal=False, args=["/bin/true"])
    cfg["annotations"] = {"rt.plugin": "hypervisor_kvm", "rt.vm.accel": "tcg"}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    rows = {"bare QEMU boot + poweroff (floor)": [], "rt run /bin/true in a VM": [], "QMP quit -> QEMU exit": []}
    rss = []
    for i in range(args.runs):
        # Interleaved, so drift in host load hits both alike, and in turn first: on a shared
        # (virtual) host, a boot right after another boot ran ~80 ms faster than one after
        # the idle QMP guest, whichever of the two it was.
        print(f"run {i + 1}/{args.runs}", file=sys.stderr)
        pair = [("bare QEMU boot + poweroff (floor)", lambda: bare_boot(kernel, initrd)),
                ("rt run /bin/true in a VM", lambda: rt_run(args.rt, bundle, root))]
        for name, measure in pair if i % 2 == 0 else pair[::-1]:
            rows[name].append(measure())
        quit_s, r = qmp_quit_and_rss(kernel, initrd)
        rows["QMP quit -> QEMU exit"].append(quit_s)
        rss.append(r)
    cfg["process"]["args"] = ["sleep", "1000"]  # a VM that stays up, for its memory
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    rt_mem = rt_rss(args.rt, bundle, root)
    print(f"\nhypervisor_kvm on TCG, {args.runs} runs (min / median ms), kernel {os.path.basename(src)}")
    for name, vals in rows.items():
        print(f"  {name:38} {min(vals) * 1000:8.0f} {statistics.median(vals) * 1000:8.0f}")
    floor = statistics.median(rows["bare QEMU boot + poweroff (floor)"])
    ours = statistics.median(rows["rt run /bin/true in a VM"])
    print(f"  rt run / floor (median)                {ours / floor:8.2f}x  (+{(ours - floor) * 1000:.0f} ms)")
    print(f"  QEMU RSS, bare guest sleeping           {statistics.median(rss) / 1024:8.1f} MiB")
    for name, kib in sorted(rt_mem.items()):
        print(f"  RSS under rt: {name:24} {kib / 1024:8.1f} MiB")
    print("  published: Kata ~144 MB per VM, Firecracker <5 MiB VMM overhead and ~125 ms boot on KVM")
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
