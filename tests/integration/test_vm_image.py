"""hypervisor_kvm with vm.image: a whole OS from a disk image that the tests build
(tests/images/mkdiskimage.py: SYSLINUX, the Debian cloud kernel and a busybox initramfs
that powers off on the ACPI button), booted by SeaBIOS on q35, with no agent."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import is_rt, processes_with, runtime_path

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's hypervisor_kvm plugin", allow_module_level=True)

MKIMAGE = os.path.join(os.path.dirname(__file__), "..", "images", "mkdiskimage.py")
READY = "rt-image: booted"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    missing = [t for t in ("qemu-system-x86_64", "syslinux", "mcopy", "mkfs.vfat") if not shutil.which(t)]
    if missing or not os.path.exists("/usr/share/seabios/bios-256k.bin"):
        pytest.fail(f"missing {', '.join(missing) or 'seabios'}: run scripts/setup")
    d = tmp_path_factory.mktemp("images")
    subprocess.run([sys.executable, MKIMAGE, str(d / "ok.img")], check=True)
    subprocess.run([sys.executable, MKIMAGE, "--no-kernel", str(d / "nokernel.img")], check=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(d / "ok.img"), str(d / "ok.qcow2")], check=True)
    return d


@pytest.fixture
def image_bundle(make_bundle):
    def make(image, fmt="raw", terminal=False, **annotations):
        def edit(cfg):
            cfg["process"]["terminal"] = terminal
            cfg["vm"] = {"kernel": {"path": "/boot/vmlinuz"}, "image": {"path": str(image), "format": fmt}}
            cfg["annotations"] = {"rt.plugin": "hypervisor_kvm", **{f"rt.vm.{k}": str(v) for k, v in annotations.items()}}
        return make_bundle(["true"], edit=edit)
    return make


@pytest.fixture
def clean(runtime, no_leaks):
    before = set(processes_with(b"qemu-system"))
    yield
    deadline = time.monotonic() + 5
    while set(processes_with(b"qemu-system")) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(processes_with(b"qemu-system")) - before, "leaked QEMU"


def wait_status(runtime, cid, want, limit=30.0):
    deadline = time.monotonic() + limit
    status = None
    while status != want and time.monotonic() < deadline:
        p = runtime("state", cid)  # with `run`, the container may not exist yet
        status = json.loads(p.stdout)["status"] if p.returncode == 0 else None
        time.sleep(0.05)
    return status


def test_boots_and_powers_off_cleanly(runtime, images, image_bundle, clean):
    b = image_bundle(images / "ok.img", ready=READY)
    proc = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "img-run"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_status(runtime, "img-run", "running", 120) == "running"
    console = os.path.join(runtime.root, "img-run", "console.log")
    deadline = time.monotonic() + 60
    while READY not in open(console).read() and time.monotonic() < deadline:
        time.sleep(0.05)  # the guest's acpid listens from here on
    runtime("kill", "img-run", "TERM", check=True)  # the ACPI power button
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # a clean power-off
    assert "SYSLINUX" in out and READY in out and "Power down" in out  # the serial console is stdout
    assert not os.path.exists(os.path.join(runtime.root, "img-run"))


def test_qcow2_lifecycle_pause_sigkill(runtime, images, image_bundle, clean):
    b = image_bundle(images / "ok.qcow2", fmt="qcow2", ready=READY)
    runtime.create("img-q", b, check=True, timeout=60)
    assert runtime.state("img-q")["status"] == "created"
    runtime("start", "img-q", check=True, timeout=120)  # returns once the console showed READY
    assert READY in open(os.path.join(runtime.root, "img-q", "console.log")).read()
    p = runtime("exec", "img-q", "true")
    assert p.returncode != 0 and "no agent" in p.stderr
    runtime("pause", "img-q", check=True)
    assert runtime.state("img-q")["status"] == "paused"
    runtime("resume", "img-q", check=True)
    runtime("kill", "img-q", "KILL", check=True)
    assert wait_status(runtime, "img-q", "stopped") == "stopped"
    runtime("delete", "img-q", check=True)


def test_serial_console_on_a_terminal(runtime, images, image_bundle, tmp_path, clean):
    """process.terminal: the serial console is a host pty whose master goes to
    --console-socket at create, as runc sends it; what is typed reaches the guest's tty."""
    from test_lifecycle import ConsoleSocket, read_all
    b = image_bundle(images / "ok.img", terminal=True, ready=READY)
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        assert runtime.create("img-tty", b, "--console-socket", cs.path, timeout=60).returncode == 0
        master = cs.receive_master()
        runtime("start", "img-tty", check=True, timeout=120)  # returns once the console showed READY
        os.write(master, b"ping\r")
        out = b""
        deadline = time.monotonic() + 30
        while b"rt-image: got ping" not in out and time.monotonic() < deadline:
            out += read_all(master, timeout=1)
        runtime("kill", "img-tty", "TERM", check=True)  # the ACPI power button
        out += read_all(master, timeout=30)
        os.close(master)
    finally:
        cs.close()
    text = out.decode(errors="replace")
    assert READY in text and "rt-image: got ping" in text and "Power down" in text, text[-2000:]
    assert wait_status(runtime, "img-tty", "stopped") == "stopped"
    runtime("delete", "img-tty", check=True)


def test_image_that_does_not_boot_times_out_with_console(runtime, images, image_bundle, clean):
    b = image_bundle(images / "nokernel.img", ready=READY, boot_timeout=8)
    runtime.create("img-bad", b, check=True, timeout=60)
    p = runtime("start", "img-bad", timeout=60)
    assert p.returncode == 1
    assert "did not boot" in p.stderr and "Loading /vmlinuz failed" in p.stderr
    assert wait_status(runtime, "img-bad", "stopped") == "stopped"
    runtime("delete", "img-bad", check=True)


def test_power_button_ignored_escalates(runtime, images, image_bundle, clean):
    # The bootloader waits at its prompt and ignores ACPI: after stop_timeout QEMU is quit.
    b = image_bundle(images / "nokernel.img", stop_timeout=1)
    proc = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "img-deaf"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_status(runtime, "img-deaf", "running", 60) == "running"
    t = time.monotonic()
    runtime("kill", "img-deaf", "TERM", check=True)
    assert proc.wait(timeout=30) == 137
    assert time.monotonic() - t >= 0.9


def test_bad_images(runtime, images, image_bundle, tmp_path, clean):
    p = runtime("create", "--bundle", image_bundle(tmp_path / "missing.img"), "img-x")
    assert p.returncode == 1 and "missing.img does not exist" in p.stderr
    p = runtime("create", "--bundle", image_bundle(images / "ok.img", fmt="floppy"), "img-y")
    assert p.returncode == 1 and "unknown image format" in p.stderr
    p = runtime("create", "--bundle", image_bundle(images / "ok.img", ready="(unclosed"), "img-z")
    assert p.returncode == 1 and "rt.vm.ready" in p.stderr and "not a regular expression" in p.stderr
