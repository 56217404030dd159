"""hypervisor_kvm logic that needs no VM: frames, settings, mounts to shares, the cpio writer."""
import json
import marshal
import os
import subprocess

import pytest

from rt.core.errors import RtError
from rt.plugins.hypervisor_kvm import backend, guest, settings, wire
from rt.spec import load_config


def test_frames_survive_any_split():
    data = wire.msg({"op": "exit", "status": 3}, 7) + wire.frame(wire.STDOUT, 0, b"x" * 1000)
    for cut in range(len(data)):
        d = wire.Decoder()
        got = d.feed(data[:cut]) + d.feed(data[cut:])
        assert got == [(wire.MSG, 7, {"op": "exit", "status": 3}), (wire.STDOUT, 0, b"x" * 1000)]


def test_oversized_frame_is_refused():
    with pytest.raises(ValueError):
        wire.Decoder().feed((wire.MAX_PAYLOAD + 1).to_bytes(4, "big") + bytes(5))


@pytest.mark.parametrize("ann, msg", [
    ({"rt.vm.accel": "warp"}, "expected auto, kvm or tcg"),
    ({"rt.vm.memory": "32"}, "at least 64 MiB"),
    ({"rt.vm.cpus": "1.5"}, "whole number"),
    ({"rt.vm.boot_timeout": "soon"}, "expected a number"),
    ({"rt.vm.color": "red"}, "unknown setting"),
    ({"rt.vm.ready": "boot(ed"}, "not a regular expression"),
    ({"rt.vm.stop_timeout": "0"}, "must be positive"),
    ({"rt.vm.rootfs": "nfs"}, "expected auto, virtiofs or initrd"),
    ({"rt.vm.rootfs_cache": "sometimes"}, "expected always, auto or never"),
])
def test_bad_settings(ann, msg):
    with pytest.raises(RtError) as e:
        settings.decode(ann)
    assert msg in e.value.msg


def test_image_settings():
    vm = settings.decode({"rt.vm.ready": "login:", "rt.vm.stop_timeout": "2.5"})
    assert (vm.ready, vm.stop_timeout) == ("login:", 2.5)
    assert settings.decode({}).stop_timeout == 30.0 and settings.decode({}).ready == ""


def test_rootfs_mode_falls_back_to_initrd_without_virtiofsd():
    said = []
    assert backend.rootfs_mode("auto", "/usr/lib/qemu/virtiofsd", said.append) == "virtiofs"
    assert backend.rootfs_mode("auto", None, said.append) == "initrd" and "virtiofsd is missing" in said[0]
    assert backend.rootfs_mode("initrd", "/usr/lib/qemu/virtiofsd", said.append) == "initrd"
    with pytest.raises(RtError, match="virtiofsd is missing"):
        backend.rootfs_mode("virtiofs", None, said.append)


def test_forced_tcg_needs_no_kvm():
    assert backend.choose_accel("tcg")[0] == "tcg"


def test_binds_share_one_directory_each(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("hosts", "resolv.conf"):
        (tmp_path / name).write_text("x")
    cfg = {"ociVersion": "1.2.0", "root": {"path": "r"}, "mounts": [
        {"destination": "/etc/hosts", "type": "bind", "source": str(tmp_path / "hosts"), "options": ["rbind", "ro"]},
        {"destination": "/etc/resolv.conf", "source": str(tmp_path / "resolv.conf"), "options": ["bind"]},
        {"destination": "/data", "type": "none", "source": str(tmp_path / "d"), "options": ["rbind"]},
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/x", "type": "nfs", "source": "srv:/x"}]}
    warnings = []
    mounts, shares = backend.guest_mounts(load_config(json.dumps(cfg)), warnings.append)
    assert shares == [{"tag": "rt1", "path": str(tmp_path)}, {"tag": "rt2", "path": str(tmp_path / "d")}]
    assert [(m["destination"], m.get("share"), m.get("sub")) for m in mounts] == [
        ("/etc/hosts", "rt1", "hosts"), ("/etc/resolv.conf", "rt1", "resolv.conf"), ("/data", "rt2", ""),
        ("/proc", None, None)]
    assert warnings and "/x" in warnings[0]


def test_missing_bind_source_is_an_error():
    cfg = {"ociVersion": "1.2.0", "root": {"path": "r"},
           "mounts": [{"destination": "/a", "type": "bind", "source": "/no/such", "options": ["bind"]}]}
    with pytest.raises(RtError, match="bind source /no/such does not exist"):
        backend.guest_mounts(load_config(json.dumps(cfg)), print)


def test_cpio_archive_reads_back(tmp_path):
    c = guest.Cpio()
    c.file("/rt/agent.py", b"print(1)\n")
    c.symlink("/bin/sh", "busybox")
    c.dir("/proc")
    (tmp_path / "a.cpio").write_bytes(c.bytes())
    out = subprocess.run(["cpio", "-it"], stdin=open(tmp_path / "a.cpio", "rb"), capture_output=True, text=True)
    assert set(out.stdout.split()) == {"rt", "rt/agent.py", "bin", "bin/sh", "proc"}


def test_kernel_version_from_a_name(tmp_path):
    k = tmp_path / "vmlinuz-6.1.0-9-cloud-amd64"
    k.write_bytes(b"not a bzImage")
    assert guest.kernel_version(str(k)) == "6.1.0-9-cloud-amd64"


def test_missing_kernel_file():
    with pytest.raises(RtError, match="no such file"):
        guest.vmlinux("/no/such/kernel")


def test_tcg_kernel_args_name_the_tsc_rate():
    args = guest.tcg_kernel_args()
    assert all(a.startswith("tsc_early_khz=") and int(a.split("=")[1]) > 0 for a in args)


def test_module_signature_is_stripped_exactly():
    from rt.plugins.hypervisor_kvm.guest import SIG_MAGIC, _unsigned
    body, sig = b"\x7fELF module body", b"S" * 40
    info = bytes(8) + len(sig).to_bytes(4, "big")
    assert _unsigned(body + sig + info + SIG_MAGIC) == body
    assert _unsigned(body) == body  # unsigned already


@pytest.mark.parametrize("msg", [
    {"op": "exit", "status": 3, "stdout": 5 << 31, "stderr": 0},  # counts past 2 GiB are marshal longs
    {"op": "ps", "pids": [2, 3, 70000]},
    {"op": "error", "error": "mkdir: é"},
    {"op": "x", "a": None, "b": True, "c": False, "d": b"raw", "e": [], "f": {"g": [1, -(1 << 40)]}},
])
def test_frames_from_the_guest_decode_safely(msg):
    frame = wire.msg(msg, 7)
    assert wire.Decoder(untrusted=True).feed(frame) == [(wire.MSG, 7, msg)]
    assert marshal.loads(frame[wire.HEADER:]) == msg  # the trusted side reads the same bytes


@pytest.mark.parametrize("payload, why", [
    (marshal.dumps(compile("1", "x", "eval"), 2), "type 'c'"),  # a code object
    (marshal.dumps({"a": 1.5}, 2), "type 'g'"),
    (marshal.dumps([1], 2), "not a single dict"),
    (marshal.dumps({1: 2}, 2), "not a string"),
    (b"{u\xff\xff\xff\x7f", "truncated"),
    (b"[\x01\x00\x00\x00" * 40 + b"N", "too deep"),
])
def test_frames_from_the_guest_refuse_what_agents_never_send(payload, why):
    frame = wire.frame(wire.MSG, 0, payload)
    with pytest.raises(ValueError, match=why):
        wire.Decoder(untrusted=True).feed(frame)


def test_the_shim_checks_each_agent_message():
    from rt.plugins.hypervisor_kvm.vmshim import _check_reply
    _check_reply("exit", {"status": 0, "stdout": 1, "stderr": 2})
    _check_reply("started", {})
    for op, m in [("exit", {"status": 300, "stdout": 0, "stderr": 0}), ("exit", {"status": "0"}),
                  ("ps", {"pids": [0]}), ("ack", {"bytes": -1}), ("created", {}), ("surprise", {})]:
        with pytest.raises(ValueError):
            _check_reply(op, m)


def test_console_log_keeps_its_tail_under_the_cap(tmp_path, monkeypatch):
    """A guest flooding its serial console must not fill the host's /run: console.log is
    cut back to the last CAP/2 bytes whenever it passes CAP."""
    from rt.plugins.hypervisor_kvm.vmshim import ConsoleLog
    monkeypatch.setattr(ConsoleLog, "CAP", 4096)
    log = ConsoleLog(str(tmp_path))
    for i in range(2000):
        log.write(b"line %05d\n" % i)
    log.close()
    kept = (tmp_path / "console.log").read_bytes()
    assert len(kept) <= 4096 and kept.endswith(b"line 01999\n")


def test_the_shims_child_keeps_only_the_fds_it_is_given(tmp_path):
    """vmshim.Child (how the shim starts QEMU and virtiofsd): stdin on /dev/null, stdout and
    stderr appended to the log, the passed fds open under their numbers, every other fd
    closed, even an inheritable one."""
    from rt.plugins.hypervisor_kvm.vmshim import Child
    keep_r, keep_w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # as the shim's ready fd is
    log = tmp_path / "child.log"
    log.write_bytes(b"before\n")
    try:
        script = f"ls /proc/self/fd; read x; echo stdin=$x; echo out >/proc/self/fd/{keep_w}; echo err >&2; exit 3"
        c = Child(["sh", "-c", script], [keep_w], str(log))
        os.close(keep_w)
        assert c.wait(timeout=10) == 3 and c.returncode == 3 and c.poll() == 3
        assert os.read(keep_r, 100) == b"out\n"
        text = log.read_text().split("\n")
        fds = {int(x) for x in text[1:] if x.isdigit()}
        assert text[0] == "before" and "stdin=" in text and "err" in text
        assert keep_w in fds and stray_w not in fds and stray_r not in fds and fds <= {0, 1, 2, 3, keep_w}
    finally:
        for fd in (keep_r, stray_r, stray_w):
            os.close(fd)


def test_the_shims_child_reports_exec_failure_and_waits_with_a_timeout(tmp_path):
    from rt.plugins.hypervisor_kvm.vmshim import Child
    with pytest.raises(OSError, match="no-such-helper"):
        Child(["no-such-helper"], [], str(tmp_path / "log"))
    c = Child(["sleep", "30"], [], str(tmp_path / "log"))
    with pytest.raises(TimeoutError):
        c.wait(timeout=0.05)
    assert c.poll() is None
    c.kill()
    assert c.wait() == -9
    c.kill()  # reaped: nothing to signal, no error


def test_systemd_cgroup_driver_is_refused_for_vms(tmp_path):
    """rt makes a VM's cgroup itself: --systemd-cgroup fails before anything is made."""
    from rt.core.backend import CreateRequest
    spec = load_config(json.dumps({"ociVersion": "1.2.0", "root": {"path": "rootfs"},
                                   "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                                   "linux": {}}).encode())
    req = CreateRequest(id="vm1", bundle=str(tmp_path), spec=spec, config={}, state_dir=str(tmp_path / "s"),
                        fifo=None, systemd_cgroup=True)
    with pytest.raises(RtError, match="--systemd-cgroup is not supported"):
        backend.VmBackend()._launch(req, {}, "vmshim")
    assert req.extra == {}
