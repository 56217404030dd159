"""lxc_system with a real distribution: Debian 12 with systemd and sshd, built once by
scripts/mkrootfs-debian (debootstrap) and cached in .cache/. Booted read-only, with a
veth on a private bridge (TEST-NET-3): sd_notify readiness, sshd answering on the
container's address, systemd reporting `running`, a reboot from inside, and a clean halt
through systemd."""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import REPO, base_config, is_rt, runtime_path

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt's lxc_system plugin", allow_module_level=True)

BRIDGE = "rt-test-deb"
ROOTFS = os.path.join(REPO, ".cache", "debian-rootfs")


@pytest.fixture(scope="module")
def debian_rootfs():
    p = subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-debian"), ROOTFS], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"scripts/mkrootfs-debian failed (it needs the Debian mirror):\n{p.stderr[-2000:]}")
    return ROOTFS


@pytest.fixture
def debian_bundle(tmp_path, debian_rootfs):
    cfg = base_config(debian_rootfs, ["/sbin/init"])
    cfg["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    cfg["annotations"] = {"rt.plugin": "lxc_system", "rt.net.bridge": BRIDGE, "rt.net.subnet": "203.0.113.0/24",
                          "rt.system.stop-timeout": "60"}
    (tmp_path / "deb").mkdir()
    (tmp_path / "deb" / "config.json").write_text(json.dumps(cfg))
    yield str(tmp_path / "deb")
    subprocess.run(["ip", "link", "del", BRIDGE], stderr=subprocess.DEVNULL)


def ssh_banner(address: str, limit: float = 30.0) -> bytes:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=1) as s:
                return s.recv(64)
        except OSError:
            time.sleep(0.05)
    return b""


def test_debian_with_systemd_and_sshd(runtime, debian_bundle, no_leaks):
    runtime.create("deb", debian_bundle, check=True)
    runtime("start", "--wait-ready", "--ready-timeout", "60", "deb", check=True)
    assert open(os.path.join(runtime.root, "deb", "ready")).read().strip() == "Ready."  # systemd's READY=1
    p = runtime("exec", "deb", "systemctl", "is-system-running")
    assert p.stdout.strip() == "running", runtime("exec", "deb", "systemctl", "--failed").stdout
    p = runtime("exec", "deb", "sh", "-c", "cat /proc/1/comm; hostname; ip -4 -o addr show eth0")
    comm, _, addr_line = p.stdout.split("\n", 2)
    assert comm == "systemd"
    address = addr_line.split()[3].split("/")[0]
    assert ssh_banner(address).startswith(b"SSH-2.0-OpenSSH")
    # `systemctl reboot` inside: systemd-shutdown's reboot(2) ends the init with SIGHUP, and
    # the container comes back on the same address
    first = runtime.state("deb")["pid"]
    runtime("exec", "deb", "systemctl", "reboot")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = runtime("state", "deb")
        if st.returncode == 0 and json.loads(st.stdout)["pid"] not in (0, first) \
                and os.path.exists(os.path.join(runtime.root, "deb", "ready")):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the container did not come back from its reboot")
    assert ssh_banner(address).startswith(b"SSH-2.0-OpenSSH")
    assert runtime("exec", "deb", "systemctl", "is-system-running").stdout.strip() == "running"
    p = runtime("stop", "deb")
    assert p.returncode == 0, p.stderr
    assert runtime.state("deb")["status"] == "stopped"
    console = open(os.path.join(runtime.root, "deb", "console.log"), errors="replace").read()
    assert "Halting system." in console  # a clean halt through systemd, not the kill after the timeout
    runtime("delete", "deb", check=True)
