#!/usr/bin/env python3
"""Build a small bootable raw disk image for VM tests, without mounting anything.

    mkdiskimage.py OUT.img [--no-kernel]

Layout: an unpartitioned FAT "superfloppy" (mkfs.vfat) with SYSLINUX in its boot
sector (syslinux --install), the newest /boot/vmlinuz-*-cloud-amd64 and a busybox
initramfs copied in with mcopy. The guest prints "rt-image: booted" on ttyS0 and
powers off on an ACPI power-button press (QMP system_powerdown).
--no-kernel leaves the kernel out: the bootloader runs but finds nothing to boot.

Needs: dosfstools, mtools, syslinux, busybox-static.
"""
import argparse
import glob
import gzip
import lzma
import os
import re
import subprocess
import tempfile

BUSYBOX = "/bin/busybox"
MODULES = ["evdev", "button"]  # =m in Debian's cloud kernel: evdev gives acpid /dev/input/event*, button the power button

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
# busybox acpid runs the action file PWRF/00000080 (in its config dir) on a power-button press.
# It opens /dev/input/event* only after starting, and a press before that is lost: wait for it.
acpid -f -c /etc/acpi -l /dev/null &
want=$(ls /dev/input | grep -c event)
until [ "$(ls -l /proc/$!/fd | grep -c /dev/input/event)" = "$want" ]; do usleep 10000; done
echo "rt-image: booted"
# echo back what is typed on the serial console (the terminal test); no input just waits
while :; do read -r line && echo "rt-image: got $line" || sleep 3600; done
"""

SYSLINUX_CFG = """SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0 quiet panic=-1
"""


def version_key(path):
    return [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", path)]


def newest_kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"), key=version_key)
    if not kernels:
        raise SystemExit("no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64")
    return kernels[-1], kernels[-1].removeprefix("/boot/vmlinuz-")


def cpio_newc(entries):
    """entries: (name, mode, data) tuples -> an uncompressed newc archive."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        name_b = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)  # uid, gid 0; mtime 0
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name_b
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(kver):
    DIR, FILE, LINK = 0o040755, 0o100755, 0o120777
    entries = [(d, DIR, b"") for d in ("bin", "dev", "proc", "sys", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules")]
    with open(BUSYBOX, "rb") as f:
        entries.append(("bin/busybox", FILE, f.read()))
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    entries += [(f"bin/{a}", LINK, b"busybox") for a in applets if a != "busybox"]
    for m in MODULES:
        path = subprocess.run(["modinfo", "-k", kver, "-n", m], check=True, capture_output=True, text=True).stdout.strip()
        if not path.endswith((".ko", ".ko.xz", ".ko.gz")):  # "(builtin)", or .ko.zst: not handled
            raise SystemExit(f"module {m}: unexpected {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        # insmod gets plain .ko files: Debian 12's kernels have CONFIG_MODULE_COMPRESS_NONE anyway
        data = lzma.decompress(data) if path.endswith(".xz") else gzip.decompress(data) if path.endswith(".gz") else data
        entries.append((f"lib/modules/{m}.ko", 0o100644, data))
    entries.append(("etc/acpi/PWRF/00000080", FILE, b"#!/bin/sh\npoweroff -f\n"))
    entries.append(("init", FILE, INIT.format(modules=" ".join(MODULES)).encode()))
    return gzip.compress(cpio_newc(entries), 9)


def build(out, with_kernel):
    kernel, kver = newest_kernel()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"syslinux.cfg": SYSLINUX_CFG.encode(), "initrd.gz": initramfs(kver)}
        if with_kernel:
            with open(kernel, "rb") as f:
                files["vmlinuz"] = f.read()
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        # content + ~1 MiB for FAT tables/ldlinux, rounded up to whole MiB
        mib = (sum(map(len, files.values())) >> 20) + 2
        if os.path.exists(out):
            os.unlink(out)
        subprocess.run(["mkfs.vfat", "-C", "-n", "RTIMAGE", out, str(mib * 1024)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["syslinux", "--install", out], check=True)
        subprocess.run(["mcopy", "-i", out, *(os.path.join(tmp, n) for n in files), "::"], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--no-kernel", action="store_true", help="omit the kernel: an image that does not boot")
    a = p.parse_args()
    build(a.out, not a.no_kernel)


if __name__ == "__main__":
    main()
