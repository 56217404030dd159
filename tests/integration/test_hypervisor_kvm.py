"""hypervisor_kvm: the busybox bundle in a QEMU microvm (TCG here, as /dev/kvm is PVM),
with its own kernel, through the real CLI; nothing (QEMU, virtiofsd, cgroup, tap) left over."""
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import is_rt, processes_with, runtime_path

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's hypervisor_kvm plugin", allow_module_level=True)

VM = {"rt.plugin": "hypervisor_kvm"}


@pytest.fixture(autouse=True)
def needs_qemu():
    import glob
    import shutil
    missing = [what for what, ok in (("qemu-system-x86_64", shutil.which("qemu-system-x86_64")),
                                     ("a guest kernel in /boot", glob.glob("/boot/vmlinuz-*")))
               if not ok]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup")


def vm_processes(root: str) -> list[int]:
    return processes_with(b"qemu-system") + processes_with(b"virtiofsd") + processes_with(root.encode(), b"vmshim")


@pytest.fixture
def vm_bundle(make_bundle):
    def make(args, annotations=None, edit=None):
        def change(cfg):
            cfg["annotations"] = {**VM, **(annotations or {})}
            if edit:
                edit(cfg)
        return make_bundle(args, edit=change)
    return make


@pytest.fixture
def clean(runtime, no_leaks):
    before = set(vm_processes(""))
    yield
    deadline = time.monotonic() + 5
    while set(vm_processes("")) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(vm_processes("")) - before, "leaked QEMU, virtiofsd or shim"


def test_run_gives_guest_kernel_output_and_exit_code(runtime, vm_bundle, clean):
    b = vm_bundle(["sh", "-c", "uname -r; echo to-stderr >&2; hostname; exit 7"])
    p = runtime("run", "--bundle", b, "vm-run", stdin=subprocess.DEVNULL, timeout=180)
    assert p.returncode == 7, p.stderr
    release, host = p.stdout.split()[0], platform.release()
    assert release != host and release in os.listdir("/lib/modules")  # the guest kernel's, not the host's
    assert p.stdout.split()[1] == "rt-test"
    assert "to-stderr" in p.stderr
    assert not os.path.exists(os.path.join(runtime.root, "vm-run"))


@pytest.mark.parametrize("agent", ["c", "python-script", "python"])
def test_guest_agents(runtime, vm_bundle, tmp_path, clean, agent):
    """PID 1 of the guest is agent.c built static, with no Python in the initramfs. Where no
    compiler is found, a busybox script loads the modules and runs agent.py (RT_VM_INIT=script
    picks it); RT_VM_AGENT=python keeps the C boot and runs agent.py. All boot the same."""
    env = dict(os.environ, RT_VM_CACHE=str(tmp_path / "vm"))
    env.update({"c": {}, "python-script": {"RT_VM_INIT": "script"}, "python": {"RT_VM_AGENT": "python"}}[agent])
    b = vm_bundle(["sh", "-c", "cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' '; echo; "
                               "tr '\\0' ' ' < /proc/1/cmdline; echo; read line; echo \"got $line\"; exit 4"])
    p = runtime("run", "--bundle", b, f"vm-{agent}", input="hello\n", timeout=300, env=env)
    assert p.returncode == 4, p.stderr
    modules, pid1, got = p.stdout.splitlines()
    assert {"virtio_console", "virtiofs"} <= set(modules.split()) and got == "got hello"
    (initramfs,) = [f for f in os.listdir(tmp_path / "vm") if f.startswith("initramfs-")]
    data = (tmp_path / "vm" / initramfs).read_bytes()
    assert (b"#!/bin/busybox sh" in data) == (agent == "python-script")
    assert (b"rt/agent.py" in data) == (agent != "c")
    assert ("agent.main()" in pid1) == (agent != "c"), pid1


@pytest.mark.parametrize("agent", ["c", "python"])
def test_stdin_flow_control_and_exec_errors(runtime, vm_bundle, tmp_path, clean, agent):
    """stdin travels within a window that the agent acks as the process reads: a process that
    never reads its stdin stalls only its own stream, not the agent (exec and kill still
    work), and megabytes pass through intact, from a file and from a pipe. Under both
    agents, a missing executable exits 127 with runc's words (podman maps them)."""
    env = dict(os.environ, **({"RT_VM_AGENT": "python", "RT_VM_CACHE": str(tmp_path / "vm")} if agent == "python"
                              else {}))
    data = os.urandom(3 << 20)
    (tmp_path / "in").write_bytes(data)
    cid = f"vm-stdin-{agent}"
    runtime.create(cid, vm_bundle(["sleep", "1000"]), check=True, timeout=180, env=env)
    try:
        runtime("start", cid, check=True, env=env)
        with open(tmp_path / "in", "rb") as f:  # a regular file: the shim reads it as acks come
            stalled = subprocess.Popen([runtime.path, "--root", runtime.root, "exec", cid, "sleep", "1000"], stdin=f,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        p = runtime("exec", cid, "echo", "still-served", timeout=20)
        assert p.stdout == "still-served\n", p.stderr
        with open(tmp_path / "in", "rb") as f:
            p = runtime("exec", cid, "md5sum", stdin=f, timeout=60)
        assert p.stdout.split()[0] == hashlib.md5(data).hexdigest()
        p = subprocess.run(f"cat {tmp_path / 'in'} | {runtime.path} --root {runtime.root} exec {cid} wc -c",
                           shell=True, capture_output=True, text=True, timeout=60)
        assert p.stdout.strip() == str(len(data)), p.stderr
        p = runtime("exec", cid, "nosuchcmd")
        assert p.returncode == 127 and 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
        p = runtime("exec", cid, "/no/such")
        assert p.returncode == 127 and 'exec: "/no/such": stat /no/such: no such file or directory' in p.stderr
        runtime("kill", cid, "KILL", check=True)
        assert stalled.wait(timeout=30) != 0
    finally:
        runtime("delete", "--force", cid)


def test_a_guest_flooding_its_console_does_not_fill_the_host(runtime, vm_bundle, clean):
    """Root in the guest with CAP_MKNOD makes the serial console's node and writes 4 MB to
    it: the host keeps at most about 1 MiB of console.log (its tail), in its tmpfs /run."""
    def edit(c):
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_MKNOD")
    flood = "mknod /dev/s c 4 64 && head -c 3000000 /dev/urandom | base64 > /dev/s"
    runtime.create("vm-flood", vm_bundle(["sh", "-c", flood], edit=edit), check=True, timeout=180)
    log = os.path.join(runtime.root, "vm-flood", "console.log")
    runtime("start", "vm-flood", check=True)
    deadline = time.monotonic() + 120
    while runtime.state("vm-flood")["status"] != "stopped" and time.monotonic() < deadline:
        assert os.path.getsize(log) <= (1 << 20) + 65536
        time.sleep(0.2)
    assert (1 << 19) <= os.path.getsize(log) <= (1 << 20) + 65536  # it did flood, and was cut back
    runtime("delete", "vm-flood", check=True)


def test_guest_mounts_and_options(runtime, vm_bundle, tmp_path, clean):
    """The agent's mounts in the guest: a read-only root, binds from the host over virtio-fs
    (ro and rw), a tmpfs whose options split into flags and data, and the hostname."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello").write_text("hello\n")

    def edit(c):
        c["mounts"] += [{"destination": "/mnt/ro", "type": "bind", "source": str(share), "options": ["bind", "ro"]},
                        {"destination": "/mnt/rw", "type": "bind", "source": str(share), "options": ["rbind", "rw"]},
                        {"destination": "/tmp2", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nosuid", "nodev", "mode=750", "size=1m"]}]
    script = ("touch /x 2>/dev/null && echo root-rw || echo root-ro; cat /mnt/ro/hello; "
              "touch /mnt/ro/y 2>/dev/null && echo ro-writable || echo ro-kept; echo w > /mnt/rw/z && echo rw-ok; "
              "grep ' /tmp2 ' /proc/mounts | cut -d' ' -f4 | tr ',' '\\n' | sort | tr '\\n' ' '; echo; hostname")
    p = runtime("run", "--bundle", vm_bundle(["sh", "-c", script], edit=edit), "vm-mnt",
                stdin=subprocess.DEVNULL, timeout=180)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:4] == ["root-ro", "hello", "ro-kept", "rw-ok"], p.stdout
    assert {"nosuid", "nodev", "mode=750", "size=1024k"} <= set(lines[4].split()), lines[4]
    assert lines[5] == "rt-test"
    assert (share / "z").read_text() == "w\n"


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_rootfs_cache_mode(runtime, vm_bundle, busybox_rootfs, tmp_path, clean, mode):
    """rt.vm.rootfs_cache is virtiofsd's cache mode for the rootfs (default always: an exec
    reads a binary once). With auto, a host edit in the rootfs shows in the guest in ~1 s."""
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "note").write_text("one\n")
    ann = {} if mode == "always" else {"rt.vm.rootfs_cache": mode}
    b = vm_bundle(["sleep", "1000"], annotations=ann, edit=lambda c: c["root"].update(path=str(rootfs)))
    cid = f"vm-cache-{mode}"
    runtime.create(cid, b, check=True, timeout=180)
    try:
        pids = processes_with(b"virtiofsd", f"source={rootfs}".encode())  # it forks its sandbox
        assert pids and all(f"cache={mode}".encode() in open(f"/proc/{p}/cmdline", "rb").read() for p in pids)
        runtime("start", cid, check=True)
        assert runtime("exec", cid, "cat", "/note", check=True).stdout == "one\n"
        if mode == "auto":
            (rootfs / "note").write_text("two\n")
            time.sleep(1.5)
            assert runtime("exec", cid, "cat", "/note", check=True).stdout == "two\n"
    finally:
        runtime("delete", "--force", cid)


def test_lifecycle_exec_pause_kill_delete(runtime, vm_bundle, clean):
    b = vm_bundle(["sh", "-c", "trap 'echo term; exit 42' TERM; while true; do sleep 0.1; done"])
    runtime.create("vm-life", b, check=True, timeout=180)
    st = runtime.state("vm-life")
    assert st["status"] == "created" and st["pid"] > 0
    runtime("start", "vm-life", check=True)
    assert runtime.state("vm-life")["status"] == "running"
    p = runtime("exec", "vm-life", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 3")
    assert p.returncode == 3 and p.stdout == "/init "  # PID 1 is the agent, built from agent.c
    p = runtime("exec", "vm-life", "cat", input="through stdin\n")
    assert p.returncode == 0 and p.stdout == "through stdin\n"
    assert runtime("exec", "vm-life", "/no/such").returncode == 127
    pids = json.loads(runtime("ps", "--format", "json", "vm-life", check=True).stdout)
    assert st["pid"] in pids and any(b"qemu-system" in open(f"/proc/{p}/cmdline", "rb").read() for p in pids)
    runtime("pause", "vm-life", check=True)
    assert runtime.state("vm-life")["status"] == "paused"
    runtime("resume", "vm-life", check=True)
    assert runtime.state("vm-life")["status"] == "running"
    runtime("kill", "vm-life", "TERM", check=True)
    deadline = time.monotonic() + 30
    while runtime.state("vm-life")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.state("vm-life")["status"] == "stopped"
    runtime("delete", "vm-life", check=True)
    assert runtime("state", "vm-life").returncode == 1


def test_exit_code_of_sigkill_and_exec_detach(runtime, vm_bundle, tmp_path, clean):
    b = vm_bundle(["sleep", "1000"])
    proc = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "vm-kill"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if runtime("state", "vm-kill").returncode == 0 and runtime.state("vm-kill")["status"] == "running":
            break
        time.sleep(0.1)
    pidfile = tmp_path / "exec.pid"
    runtime("exec", "-d", "--pid-file", str(pidfile), "vm-kill", "sleep", "1000", check=True,
            stdout=subprocess.DEVNULL)  # the detached process keeps its stdio, as under runc
    assert int(pidfile.read_text()) > 0
    runtime("kill", "vm-kill", "KILL", check=True)
    assert proc.wait(timeout=60) == 137


def test_qemu_killed_from_outside(runtime, vm_bundle, clean):
    b = vm_bundle(["sleep", "1000"])
    runtime.create("vm-ext", b, check=True, timeout=180)
    runtime("start", "vm-ext", check=True)
    shim = runtime.state("vm-ext")["pid"]
    qemu = [p for p in processes_with(b"qemu-system") if open(f"/proc/{p}/stat").read().split()[3] == str(shim)]
    assert len(qemu) == 1
    os.kill(qemu[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while runtime.state("vm-ext")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.state("vm-ext")["status"] == "stopped"
    runtime("delete", "vm-ext", check=True)


def test_missing_kernel_is_a_clear_error(runtime, vm_bundle, clean):
    b = vm_bundle(["true"], edit=lambda c: c.update(vm={"kernel": {"path": "/no/such/vmlinuz"}}))
    p = runtime.create("vm-nokernel", b)
    assert p.returncode == 1 and "guest kernel /no/such/vmlinuz: no such file" in p.stderr
    assert not os.path.exists(os.path.join(runtime.root, "vm-nokernel"))


def test_kernel_that_never_reaches_the_agent_times_out_with_console_tail(runtime, vm_bundle, clean):
    import glob
    kernel = sorted(glob.glob("/boot/vmlinuz-*"))[-1]
    # the kernel runs busybox's sleep as init instead of rt's: no agent ever answers
    b = vm_bundle(["true"], annotations={"rt.vm.boot_timeout": "4"},
                  edit=lambda c: c.update(vm={"kernel": {"path": kernel, "parameters": [
                      "loglevel=7", "rdinit=/bin/busybox", "sleep", "60"]}}))
    p = runtime.create("vm-noagent", b, timeout=120)
    assert p.returncode == 1
    assert "did not come up (timed out); guest console:" in p.stderr
    assert "Linux version" in p.stderr or "Run /bin/busybox" in p.stderr


def test_a_cgroup_in_use_is_refused_and_left_alone(runtime, vm_bundle, clean):
    """A cgroupsPath naming someone else's cgroup (here our own sleep's) is not taken over:
    create fails and the process in it lives on (it once killed it at delete)."""
    dirs = [os.path.join("/sys/fs/cgroup", c, "rt-test-vm-victim") for c in os.listdir("/sys/fs/cgroup")
            if os.path.exists(os.path.join("/sys/fs/cgroup", c, "cgroup.procs"))]
    victim = subprocess.Popen(["sleep", "1000"])
    try:
        for d in dirs:
            os.makedirs(d, exist_ok=True)
            with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(victim.pid))  # v1 cpuset refuses a task until cpus are set: no matter
        b = vm_bundle(["true"], edit=lambda c: c["linux"].update(cgroupsPath="/rt-test-vm-victim"))
        p = runtime("run", "--bundle", b, "vm-victim")
        assert p.returncode != 0 and "container's cgroup is not empty" in p.stderr, p.stderr
        assert runtime("delete", "--force", "vm-victim").returncode == 0
        assert victim.poll() is None, "the process in the cgroup was killed"
    finally:
        victim.kill()
        victim.wait()
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def test_bad_annotations_and_host_namespaces(runtime, vm_bundle, clean):
    p = runtime.create("vm-bad", vm_bundle(["true"], annotations={"rt.vm.accel": "warp"}))
    assert p.returncode == 1 and "expected auto, kvm or tcg, got 'warp'" in p.stderr
    p = runtime.create("vm-bad", vm_bundle(["true"], edit=lambda c: c["linux"]["namespaces"].append(
        {"type": "ipc", "path": f"/proc/{os.getpid()}/ns/ipc"}) or c["linux"]["namespaces"].remove({"type": "ipc"})))
    assert p.returncode == 1 and "cannot join the host's ipc namespace" in p.stderr
    assert not os.listdir(runtime.root) if os.path.exists(runtime.root) else True


def test_tap_on_a_private_bridge_and_address_in_the_guest(runtime, vm_bundle, clean):
    """rt.net.* as for lxc_system: a tap on an rt bridge (TEST-NET-3, nothing routed), the
    leased address and route set inside the guest by the agent, traffic both ways over the
    tap, and the tap gone after delete."""
    from rt.core.api import link_name, mac_for
    bridge = "rt-test-vmbr"
    b = vm_bundle(["sh", "-c", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0; ip route; "
                   "ping -c 1 -W 5 203.0.113.1 >/dev/null && echo gateway-answers; "
                   "echo from-the-guest | nc -l -p 7777"],
                  annotations={"rt.net.bridge": bridge, "rt.net.subnet": "203.0.113.0/24"},
                  edit=lambda c: [c["process"]["capabilities"][k].append("CAP_NET_RAW")  # for ping, as in a container
                                  for k in ("bounding", "effective", "permitted")])
    try:
        proc = subprocess.Popen([runtime.path, "--root", runtime.root, "run", "--bundle", b, "vm-net"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got, deadline = b"", time.monotonic() + 120
        while not got and time.monotonic() < deadline:  # traffic over the tap, host to guest
            try:
                with socket.create_connection(("203.0.113.2", 7777), timeout=2) as s:
                    got = s.recv(100)
            except OSError:
                time.sleep(0.2)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert got == b"from-the-guest\n"
        assert mac_for("vm-net") in out and "gateway-answers" in out  # and guest to host
        assert "inet 203.0.113.2/24" in out and "default via 203.0.113.1 dev eth0" in out
        assert not os.path.exists(f"/sys/class/net/{link_name('rtt', 'vm-net')}")
        with open(os.path.join(runtime.root, "ipam", "203.0.113.0_24.json")) as f:
            assert json.load(f) == {}
    finally:
        subprocess.run(["ip", "link", "del", bridge], stderr=subprocess.DEVNULL)


def test_exec_tty_follows_the_host_terminal(runtime, vm_bundle, clean):
    """exec -t: a guest pty from the container's own devpts, sized like the host terminal."""
    runtime("run", "-d", "--bundle", vm_bundle(["sleep", "1000"]), "vm-tty", check=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=180)
    cmd = (f"stty rows 33 cols 101; {runtime.path} --root {runtime.root} exec -t vm-tty "
           "sh -c 'tty; sleep 0.6; stty size; exit 4'; echo rc=$?")
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert "/dev/pts/0" in p.stdout and "33 101" in p.stdout and "rc=4" in p.stdout, p.stdout + p.stderr
    runtime("delete", "-f", "vm-tty", check=True)


def test_rootfs_packed_into_the_initrd(runtime, vm_bundle, clean):
    # The fallback without virtiofsd, forced here: a copy of the rootfs inside the initrd.
    b = vm_bundle(["sh", "-c", "grep ' / ' /proc/mounts | head -1; cat /etc/passwd | head -1; exit 5"],
                  {"rt.vm.rootfs": "initrd"})
    p = runtime("run", "--bundle", b, "vm-packed", stdin=subprocess.DEVNULL, timeout=180)
    assert p.returncode == 5, p.stderr
    assert "virtiofs" not in p.stdout and "root:x:0:0" in p.stdout
    assert not processes_with(b"virtiofsd", b"vm-packed")


def test_rootfs_too_big_for_initrd_mode(runtime, vm_bundle, tmp_path, clean):
    rootfs = tmp_path / "big-rootfs"
    shutil.copytree(os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".cache", "busybox-rootfs")),
                    rootfs, symlinks=True)
    with open(rootfs / "blob", "wb") as f:
        f.truncate(300 << 20)  # sparse: no disk, but 300 MiB to pack
    def edit(cfg):
        cfg["root"]["path"] = str(rootfs)
    b = vm_bundle(["true"], {"rt.vm.rootfs": "initrd", "rt.vm.memory": "256"}, edit=edit)
    p = runtime("create", "--bundle", b, "vm-big", stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 1
    assert "not enough memory for the rootfs in initrd mode" in p.stderr and "has 256 MiB" in p.stderr
    assert runtime("state", "vm-big").returncode == 1
    p = runtime("create", "--bundle", vm_bundle(["true"], {"rt.vm.rootfs": "initrd"}, edit=lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": str(tmp_path), "options": ["bind"]})), "vm-bind")
    assert p.returncode == 1 and "bind mounts need virtio-fs" in p.stderr


def test_process_terminal_through_console_socket(runtime, vm_bundle, tmp_path, clean):
    """process.terminal: the pty master goes to --console-socket at create, as runc sends it;
    the workload has a guest tty of that size, and follows a resize of the host pty."""
    from test_lifecycle import ConsoleSocket, read_all
    import fcntl
    import termios

    def edit(c):
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 101}
    b = vm_bundle(["sh", "-c", "tty; stty size; read line; echo got $line; sleep 1; stty size; exit 4"], edit=edit)
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        assert runtime.create("vm-tty2", b, "--console-socket", cs.path, timeout=180).returncode == 0
        master = cs.receive_master()
        runtime("start", "vm-tty2", check=True)
        os.write(master, b"hello\r")
        time.sleep(0.5)
        fcntl.ioctl(master, termios.TIOCSWINSZ, (40).to_bytes(2, "little") + (120).to_bytes(2, "little") + bytes(4))
        out = read_all(master, timeout=20).decode().replace("\r", "").split("\n")
        os.close(master)
    finally:
        cs.close()
    out = [line for line in out if line != "hello"]  # the guest pty echoes what was typed
    assert out[0].startswith("/dev/pts/") and out[1] == "33 101", out
    assert out[2:4] == ["got hello", "40 120"], out
    deadline = time.monotonic() + 30
    while runtime.state("vm-tty2")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    runtime("delete", "vm-tty2", check=True)


def test_host_hooks_run_and_guest_hooks_are_refused(runtime, vm_bundle, tmp_path, clean):
    """prestart/createRuntime run on the host once the VM exists (state on stdin, the
    shim's pid), poststart and poststop around the workload; in-container hooks are refused."""
    def hook(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/{name}"]}

    def edit(c):
        c["hooks"] = {"prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
                      "poststart": [hook("poststart")], "poststop": [hook("poststop")]}
    p = runtime("run", "--bundle", vm_bundle(["true"], edit=edit), "vm-hooks", stdin=subprocess.DEVNULL, timeout=180)
    assert p.returncode == 0, p.stderr
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        state = json.loads((tmp_path / name).read_text())
        assert state["id"] == "vm-hooks" and (state["pid"] > 0 or name == "poststop"), (name, state)
    assert json.loads((tmp_path / "createRuntime").read_text())["status"] == "creating"

    def guest_hook(c):
        c["hooks"] = {"createContainer": [hook("cc")]}
    p = runtime("create", "--bundle", vm_bundle(["true"], edit=guest_hook), "vm-hooks2", timeout=60)
    assert p.returncode == 1 and "createContainer and startContainer hooks" in p.stderr
    assert not (tmp_path / "cc").exists()


def test_capabilities_nnp_and_seccomp_apply_in_the_guest(runtime, vm_bundle, clean):
    """The spec's capability sets, no_new_privs and seccomp filter (compiled on the host by
    libseccomp, loaded by the agent) hold inside the guest, for the process and for exec."""
    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                               "errnoRet": 1}]}
    script = ("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '; "
              "mkdir /tmp/x 2>&1; sleep 1000")
    runtime.create("vm-conf", vm_bundle(["sh", "-c", script], edit=edit), check=True, timeout=180)
    runtime("start", "vm-conf", check=True)
    p = runtime("exec", "vm-conf", "sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -s '\\t ' ' ';"
                                                " mkdir /tmp/y")
    assert "Seccomp: 2" in p.stdout and "Operation not permitted" in p.stderr, (p.stdout, p.stderr)
    # AUDIT_WRITE, KILL and NET_BIND_SERVICE (bits 29, 5, 10) and nothing else
    assert "CapEff: 0000000020000420" in p.stdout
    runtime("kill", "vm-conf", "KILL", check=True)
    deadline = time.monotonic() + 30
    while runtime.state("vm-conf")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime("delete", "vm-conf", check=True)

    def notify(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/tmp/nowhere.sock",
                                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    p = runtime("create", "--bundle", vm_bundle(["true"], edit=notify), "vm-notify", timeout=60)
    assert p.returncode == 1 and "SCMP_ACT_NOTIFY" in p.stderr


def test_update_limits_the_vm_cgroup(runtime, vm_bundle, clean):
    """update: cpu and pids limits land on the cgroup around QEMU."""
    runtime("run", "-d", "--bundle", vm_bundle(["sleep", "1000"]), "vm-upd", check=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=180)
    pid = runtime.state("vm-upd")["pid"]
    runtime("update", "--cpu-quota", "50000", "--cpu-period", "100000", "--pids-limit", "77", "vm-upd", check=True)
    cg = {}
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(",") if ctrls else [""]:
            cg[ctrl] = path
    if "cpu" in cg:  # v1 / hybrid: /sys/fs/cgroup/cpu is there whether or not it is joined with cpuacct
        assert open(f"/sys/fs/cgroup/cpu{cg['cpu']}/cpu.cfs_quota_us").read().strip() == "50000"
        assert open(f"/sys/fs/cgroup/pids{cg['pids']}/pids.max").read().strip() == "77"
    else:
        base = f"/sys/fs/cgroup{cg['']}"
        assert open(f"{base}/cpu.max").read().split() == ["50000", "100000"]
        assert open(f"{base}/pids.max").read().strip() == "77"
    runtime("delete", "--force", "vm-upd", check=True)


def mem_total_mib(runtime, cid: str) -> int:
    out = runtime("exec", cid, "grep", "MemTotal", "/proc/meminfo", check=True).stdout
    return int(out.split()[1]) >> 10


def test_update_memory_resizes_the_guest_through_its_balloon(runtime, vm_bundle, clean):
    """update --memory shrinks the guest (its MemTotal) through virtio-balloon, and gives the
    memory back up to the size it booted with; beyond that, or below 64 MiB, is refused."""
    runtime("run", "-d", "--bundle", vm_bundle(["sleep", "1000"]), "vm-mem", check=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=180)
    booted = mem_total_mib(runtime, "vm-mem")

    def settles(want):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if abs(mem_total_mib(runtime, "vm-mem") - want) < 16:
                return True
            time.sleep(0.2)
        return False
    runtime("update", "--memory", str(128 << 20), "vm-mem", check=True)
    assert settles(booted - 128), (booted, mem_total_mib(runtime, "vm-mem"))  # 256 MiB booted, 128 inflated
    runtime("update", "--memory", str(256 << 20), "vm-mem", check=True)
    assert settles(booted)
    p = runtime("update", "--memory", str(512 << 20), "vm-mem")
    assert p.returncode == 1 and "booted with 256 MiB" in p.stderr
    p = runtime("update", "--memory", str(32 << 20), "vm-mem")
    assert p.returncode == 1 and "from 64 MiB" in p.stderr
    runtime("delete", "--force", "vm-mem", check=True)
