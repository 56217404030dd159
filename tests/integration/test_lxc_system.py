"""lxc_system: busybox init as PID 1, the container interface, a veth on a private bridge
(TEST-NET-3 addresses, no packet leaves), `rt stop` through the init, clean teardown."""
import json
import os
import shutil
import subprocess
import time
import sys
import tempfile

import pytest

from conftest import REPO, is_rt, processes_with, runtime_path, system_config, write_bundle

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's lxc_system plugin", allow_module_level=True)

INITTAB = """::sysinit:/bin/sh -c 'echo booted > /run/booted'
::respawn:/bin/sleep 1000
::shutdown:/bin/sh -c 'echo bye > /run/bye'
"""
BRIDGE = "rt-test-br2"


@pytest.fixture
def system_bundle(tmp_path):
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    (rootfs / "run").mkdir(exist_ok=True)
    (rootfs / "etc" / "inittab").write_text(INITTAB)

    def make(annotations=None, edit=None):
        cfg = system_config(str(rootfs), ["/sbin/init"], annotations)
        if edit:
            edit(cfg)
        return write_bundle(tmp_path / f"bundle{len(os.listdir(tmp_path))}", cfg)
    yield make
    subprocess.run(["ip", "link", "del", BRIDGE], stderr=subprocess.DEVNULL)


NET = {"rt.net.subnet": "203.0.113.0/24", "rt.net.bridge": BRIDGE}


def monitors(root: str) -> list[int]:
    """Console monitors still running for containers under `root`."""
    # not b"monitor" alone: a test's own tmp path may hold the word, and so `rt` commands
    return sorted(set(processes_with(b"lxc-monitor-", root.encode()) + processes_with(b"monitor.py", root.encode())))


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def test_system_container_lifecycle(runtime, system_bundle, no_leaks):
    before = links()
    runtime.create("sys1", system_bundle(NET), check=True)
    runtime("start", "sys1", check=True)
    script = ("while [ ! -e /run/booted ]; do sleep 0.05; done; cat /run/booted; "
              "tr '\\0' '\\n' < /proc/1/environ | grep -c '^container=rt$'; cat /run/host/container-manager; "
              "ip -o -4 addr show eth0 | awk '{print $4}'; cat /proc/1/comm; "
              "echo 0 > /proc/sys/net/ipv4/conf/all/forwarding && echo net-writable; "
              "touch /proc/sys/kernel/domainname 2>/dev/null; echo x > /proc/sys/kernel/domainname 2>/dev/null || echo kernel-ro; "
              "mkdir /sys/fs/cgroup/pids/svc 2>/dev/null || mkdir /sys/fs/cgroup/svc; echo cgroup-writable")
    p = runtime("exec", "sys1", "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["booted", "1", "rt", "203.0.113.2/24", "init", "net-writable", "kernel-ro",
                                "cgroup-writable"]
    host_if = [l for l in links() - before if l.startswith("rtv")]
    assert len(host_if) == 1
    p = runtime("stop", "--timeout", "10", "sys1")
    assert p.returncode == 0, p.stderr
    assert runtime.state("sys1")["status"] == "stopped"
    runtime("delete", "sys1", check=True)
    assert not host_if[0] in links()
    assert not monitors(runtime.root)
    assert json.loads(open(os.path.join(runtime.root, "ipam", "203.0.113.0_24.json")).read()) == {}


def test_two_containers_get_different_addresses(runtime, system_bundle, no_leaks):
    b = system_bundle(NET)
    runtime.create("a", b, check=True)
    runtime.create("b", b, check=True)
    ips = []
    for cid in ("a", "b"):
        runtime("start", cid, check=True)
        ips.append(runtime("exec", cid, "sh", "-c", "ip -o -4 addr show eth0 | awk '{print $4}'").stdout.strip())
    assert ips == ["203.0.113.2/24", "203.0.113.3/24"]
    for cid in ("a", "b"):
        runtime("delete", "--force", cid, check=True)


def test_bad_annotations_and_specs(runtime, system_bundle, no_leaks):
    p = runtime.create("bad1", system_bundle({"rt.net.subnet": "not-a-net"}))
    assert p.returncode != 0 and 'annotations[' in p.stderr and 'rt.net.subnet' in p.stderr
    p = runtime.create("bad2", system_bundle({"rt.net.colour": "blue"}))
    assert p.returncode != 0 and "unknown setting" in p.stderr
    no_pid = system_bundle(edit=lambda c: c["linux"].__setitem__(
        "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]))
    p = runtime.create("bad3", no_pid)
    assert p.returncode != 0 and "pid" in p.stderr
    noinit = system_bundle(edit=lambda c: c["process"].__setitem__("args", ["/sbin/no-init"]))
    p = runtime.create("bad4", noinit)
    assert p.returncode != 0 and "no such file" in p.stderr
    assert runtime("list", "-q").stdout == ""


def test_stop_kills_an_init_that_ignores_the_halt_signal(runtime, system_bundle, no_leaks):
    b = system_bundle({"rt.system.stop-signal": "SIGUSR2", "rt.system.stop-timeout": "0.5"},
                      edit=lambda c: c["process"].__setitem__("args", ["sh", "-c", "trap '' USR2; sleep 1000"]))
    runtime.create("deaf", b, check=True)
    runtime("start", "deaf", check=True)
    p = runtime("stop", "deaf")
    assert p.returncode == 0, p.stderr
    assert runtime.state("deaf")["status"] == "stopped"
    runtime("delete", "deaf", check=True)


def test_console_log_and_attach(runtime, system_bundle, tmp_path, no_leaks):
    """/dev/console is a pty kept by the monitor: its output is logged, and `rt console`
    reaches a shell that init runs on it."""
    b = system_bundle()
    rootfs = json.loads(open(os.path.join(b, "config.json")).read())["root"]["path"]
    with open(os.path.join(rootfs, "etc", "inittab"), "a") as f:
        f.write("::sysinit:/bin/echo hello-from-init\n::respawn:-/bin/sh\n")
    runtime.create("con", b, check=True)
    runtime("start", "con", check=True)
    p = runtime("exec", "con", "sh", "-c", "ls -l /dev/console; tty < /dev/console 2>/dev/null || true")
    assert "136," in p.stdout  # a pty (devpts major 136), not a host device
    script = "import sys, time; time.sleep(1); sys.stdout.write('echo $((6*7))-answer\\n'); sys.stdout.flush(); " \
             "time.sleep(1.5); sys.stdout.write('\\x01q'); sys.stdout.flush()"
    feeder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    out = subprocess.run([runtime.path, "--root", runtime.root, "console", "con"], stdin=feeder.stdout,
                         capture_output=True, timeout=30).stdout.decode(errors="replace")
    feeder.wait()
    assert "42-answer" in out.replace("\r", "")
    log = open(os.path.join(runtime.root, "con", "console.log"), errors="replace").read()
    assert "hello-from-init" in log and "42-answer" in log
    runtime("stop", "con", check=True)
    runtime("delete", "con", check=True)
    assert runtime("console", "con").returncode != 0  # gone


def test_console_outlives_the_init_closing_it(runtime, system_bundle, no_leaks):
    """systemd closes /dev/console once journald runs, and reopens it for each message: a
    moment with no slave open inside must not end the console (the monitor took the EIO
    for the container's end and closed the pty; every later open of /dev/console failed)."""
    script = ("exec </dev/null >/dev/null 2>&1; sleep 0.3; "
              "echo later > /dev/console && echo reopened > /run/ok; sleep 1000")
    b = system_bundle(edit=lambda c: c["process"].__setitem__("args", ["sh", "-c", script]))
    runtime.create("con2", b, check=True)
    runtime("start", "con2", check=True)
    p = runtime("exec", "con2", "sh", "-c", "for i in $(seq 60); do [ -e /run/ok ] && break; sleep 0.05; done; "
                                            "cat /run/ok")
    assert p.stdout.strip() == "reopened", p.stderr
    assert "later" in open(os.path.join(runtime.root, "con2", "console.log"), errors="replace").read()
    assert monitors(runtime.root)
    runtime("kill", "con2", "KILL", check=True)
    deadline = time.monotonic() + 5
    while monitors(runtime.root) and time.monotonic() < deadline:  # it ends with the init
        time.sleep(0.05)
    assert not monitors(runtime.root)
    runtime("delete", "con2", check=True)


def test_unprivileged_with_automatic_id_range(runtime, system_bundle, no_leaks):
    """rt.system.userns=auto: root inside is a high host uid from rt's own ranges; the
    rootfs is idmapped, so it still looks (and writes) as root-owned, without a chown."""
    # as with runc, the container's root must be able to reach the rootfs: not under pytest's 0700 tmp
    top = tempfile.mkdtemp(prefix="rt-test-unp-")
    os.chmod(top, 0o755)
    try:
        _unprivileged(runtime, system_bundle, top)
    finally:
        shutil.rmtree(top)


def _unprivileged(runtime, system_bundle, top):
    b = system_bundle({"rt.system.userns": "auto"})
    cfg = json.loads(open(os.path.join(b, "config.json")).read())
    shutil.copytree(cfg["root"]["path"], os.path.join(top, "rootfs"), symlinks=True)
    cfg["root"]["path"] = os.path.join(top, "rootfs")
    open(os.path.join(b, "config.json"), "w").write(json.dumps(cfg))
    runtime.create("unp", b, check=True)
    runtime("start", "unp", check=True)
    pid = runtime.state("unp")["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == 1 << 20
    p = runtime("exec", "unp", "sh", "-c", "id -u; awk '{print $2}' /proc/self/uid_map; stat -c %u /bin/busybox; "
                                           "touch /root/made-inside && stat -c %u /root/made-inside")
    assert p.stdout.split() == ["0", str(1 << 20), "0", "0"], p.stderr
    rootfs = json.loads(open(os.path.join(b, "config.json")).read())["root"]["path"]
    assert os.stat(os.path.join(rootfs, "root", "made-inside")).st_uid == 0  # on disk: root, through the idmap
    runtime("stop", "unp", check=True)
    runtime("delete", "unp", check=True)
    assert json.loads(open(os.path.join(runtime.root, "idranges.json")).read()) == {}


def test_start_wait_ready_and_sd_notify(runtime, system_bundle, no_leaks):
    """`start --wait-ready`: busybox init is ready once it runs its first service; an
    init's sd_notify READY=1 on /run/host/notify is recorded by the monitor."""
    import socket
    runtime.create("ready", system_bundle(), check=True)
    p = runtime("start", "--wait-ready", "--ready-timeout", "soon", "ready")
    assert p.returncode == 1 and "invalid value 'soon' for --ready-timeout" in p.stderr
    assert runtime.state("ready")["status"] == "created"  # refused before anything ran
    runtime("start", "--wait-ready", "ready", check=True)
    init = runtime.state("ready")["pid"]
    with open(f"/proc/{init}/task/{init}/children") as f:
        assert f.read().split()  # its first service already runs
    env = open(f"/proc/{init}/environ", "rb").read().split(b"\0")
    assert b"NOTIFY_SOCKET=/run/host/notify" in env
    p = runtime("exec", "ready", "sh", "-c", "test -S /run/host/notify && echo socket; echo $NOTIFY_SOCKET")
    assert p.stdout.split() == ["socket"]  # for the init only, not for exec'd processes
    # what systemd sends once it is up, through the same socket the init sees
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"STATUS=Startup finished\nREADY=1\n", os.path.join(runtime.root, "ready", "run-host", "notify"))
    s.close()
    ready = os.path.join(runtime.root, "ready", "ready")
    deadline = time.monotonic() + 5
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open(ready).read() == "Startup finished\n"
    assert runtime("stop", "ready").returncode == 0
    runtime("delete", "ready", check=True)


def test_wait_ready_reports_an_init_that_dies(runtime, system_bundle, no_leaks):
    b = system_bundle(edit=lambda c: c["process"].__setitem__("args", ["sh", "-c", "exec sleep 0.3"]))
    runtime.create("dies", b, check=True)
    p = runtime("start", "--wait-ready", "--ready-timeout", "5", "dies")
    assert p.returncode == 1 and ("exited before it was ready" in p.stderr or "not ready" in p.stderr), p.stderr
    runtime("delete", "--force", "dies", check=True)


def _wait_new_init(runtime, cid: str, old: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = runtime("state", cid)
        if st.returncode == 0:
            st = json.loads(st.stdout)
            if st["status"] == "running" and st["pid"] not in (0, old):
                return st["pid"]
        time.sleep(0.05)
    raise AssertionError(f"{cid} did not come back after a reboot")


def test_in_guest_reboot_restarts_the_container(runtime, system_bundle, no_leaks):
    """`reboot` inside (busybox init calls reboot(2): the kernel ends the init with SIGHUP)
    brings the container back as lxc-start does: same id, address and bridge port, a new
    init; `rt reboot` does the same from the host. A halt stays halted."""
    before = links()
    runtime.create("rb", system_bundle(NET), check=True)
    runtime("start", "rb", check=True)
    first = runtime.state("rb")["pid"]
    runtime("exec", "rb", "reboot")  # its status is not checked: the shutdown may kill it first
    second = _wait_new_init(runtime, "rb", first)
    p = runtime("exec", "rb", "sh", "-c", "while [ ! -e /run/booted ]; do sleep 0.05; done; cat /run/booted; "
                                          "ip -o -4 addr show eth0 | awk '{print $4}'")
    assert p.stdout.split() == ["booted", "203.0.113.2/24"], p.stderr
    assert len([l for l in links() - before if l.startswith("rtv")]) == 1  # the old veth went with its netns
    assert len(monitors(runtime.root)) == 1
    p = runtime("reboot", "--timeout", "30", "rb")
    assert p.returncode == 0, p.stderr
    assert runtime.state("rb")["pid"] not in (first, second)
    runtime("stop", "rb", check=True)
    time.sleep(0.5)  # a halt (SIGINT from reboot(2)) is not a reboot: nothing restarts it
    assert runtime.state("rb")["status"] == "stopped"
    runtime("delete", "rb", check=True)
    assert not [l for l in links() - before if l.startswith("rtv")]
    assert not monitors(runtime.root)


def test_reboot_under_a_reaping_caller_ends_the_container(runtime, system_bundle, tmp_path, no_leaks):
    """With --pid-file (conmon, containerd) the caller reaps the init, so a reboot ends the
    container, as under runc; `rt reboot` of the stopped container creates it again."""
    runtime.create("rbp", system_bundle(), "--pid-file", str(tmp_path / "pid"), check=True)
    runtime("start", "rbp", check=True)
    p = runtime("reboot", "rbp")
    assert p.returncode != 0 and "caller reaps" in p.stderr
    runtime("exec", "rbp", "reboot")
    deadline = time.monotonic() + 30
    while runtime.state("rbp")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert runtime.state("rbp")["status"] == "stopped"
    p = runtime("reboot", "rbp")
    assert p.returncode == 0, p.stderr
    assert runtime.state("rbp")["status"] == "running"
    assert runtime("reboot", "nosuch").returncode != 0
    assert "number of seconds" in runtime("reboot", "--timeout", "soon", "rbp").stderr
    runtime("delete", "--force", "rbp", check=True)


def test_monitor_is_compiled_and_falls_back_to_python(runtime, system_bundle, tmp_path, no_leaks):
    """The console monitor is monitor.c, built once into the cache; with no C compiler it
    is monitor.py, with a warning, and it too restarts the container on a reboot."""
    b = system_bundle()
    runtime.create("mc", b, check=True)
    runtime("start", "mc", check=True)
    (pid,) = monitors(runtime.root)
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("lxc-monitor-")
    runtime("delete", "--force", "mc", check=True)

    log = tmp_path / "log.json"
    env = dict(os.environ, PATH="/nonexistent", RT_CACHE=str(tmp_path / "cache"))
    p = runtime("--log", str(log), "--log-format", "json", "create", "--bundle", b, "mp",
                stdout=subprocess.DEVNULL, env=env)
    assert p.returncode == 0, p.stderr
    assert "no C compiler" in log.read_text()
    runtime("start", "mp", check=True)
    assert len(monitors(runtime.root)) == 1
    assert monitors(runtime.root) == processes_with(b"monitor.py", runtime.root.encode())
    first = runtime.state("mp")["pid"]
    # not checked: the shutdown that follows may kill the exec'd process before it exits
    runtime("exec", "mp", "reboot")
    _wait_new_init(runtime, "mp", first)
    assert len(monitors(runtime.root)) == 1
    runtime("delete", "--force", "mp", check=True)
    assert not (tmp_path / "cache").exists()  # nothing half-built left


def test_monitor_killed_state_stays_truthful_and_delete_cleans(runtime, system_bundle, no_leaks):
    """SIGKILL of the monitor (the init's parent): the init runs on, adopted by the host,
    `state` says running, and `delete --force` still removes the veth, cgroup and lease."""
    before = links()
    runtime.create("mk", system_bundle(NET), check=True)
    runtime("start", "mk", check=True)
    (mon,) = monitors(runtime.root)
    os.kill(mon, 9)
    deadline = time.monotonic() + 5
    while monitors(runtime.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not monitors(runtime.root)
    assert runtime.state("mk")["status"] == "running"
    assert runtime("exec", "mk", "true").returncode == 0
    runtime("delete", "--force", "mk", check=True)
    assert not [l for l in links() - before if l.startswith("rtv")]
    assert json.loads(open(os.path.join(runtime.root, "ipam", "203.0.113.0_24.json")).read()) == {}
