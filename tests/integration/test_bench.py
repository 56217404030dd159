"""`rt bench` for real: rt's plugins next to runc, LXC and a bare QEMU on the busybox
bundle; the not-applicable row; and Ctrl-C in the middle leaves nothing behind."""
import glob
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import is_rt, processes_with, runtime_path

pytestmark = pytest.mark.root
if not is_rt(runtime_path()):
    pytest.skip("rt bench is rt's own verb", allow_module_level=True)


def leftovers(pid: int) -> dict:
    """Everything an `rt bench` with this pid could leave: processes, cgroups, scratch."""
    token = f"rtbench-{pid}-".encode()
    cgroups = [d for d in glob.glob("/sys/fs/cgroup/*/**/", recursive=True) if f"rtbench-{pid}-" in d]
    return {"processes": processes_with(token), "cgroups": cgroups,
            "links": [ln for ln in os.listdir("/sys/class/net") if ln.startswith("rtv")]}


def bench(bundle, out, *args, timeout=600, env=None):
    rt = runtime_path()
    if "--core" not in args:
        args = ("--core", "warm", *args)
    p = subprocess.run([rt, "bench", "--json", "-o", str(out), *args, bundle], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr
    return {t["name"]: t for t in json.loads(p.stdout)["targets"]}, p.stderr


def test_app_level_against_runc(make_bundle, tmp_path):
    bundle = make_bundle(["sh", "-c", "echo hi"])
    rows, err = bench(bundle, tmp_path / "out", "--plugins", "app_single", "--peers", "runc", "--runs", "2",
                      "--density", "3", "--window", "30", "--core", "warm,none")
    assert set(rows) == {"rt app_single", "rt app_single (in-process)", "runc"}
    for row in rows.values():
        assert row["status"] == "ok", row
        for metric in ("up", "roundtrip", "exec", "down", "memory"):
            s = row["metrics"][metric]
            assert s["n"] == 2 and 0 < s["min"] <= s["median"], (row["name"], metric, s)
        assert [p["count"] for p in row["density"]["curve"]] == [1, 2, 3]
        assert row["density"]["started_in_window"] == 3
    assert "[2/2] runc:" in err  # progress while it works
    files = sorted(os.listdir(tmp_path / "out"))  # scripts/setup installs the rt[bench] extra
    assert files == ["latency.png", "latency.svg", "memory.png", "memory.svg", "results.json", "table.txt"]
    assert "rt app_single *" in (tmp_path / "out" / "table.txt").read_text()


def test_not_applicable_row_and_the_rest_go_on(make_bundle, tmp_path):
    def host_net(cfg):
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
    bundle = make_bundle(["true"], edit=host_net)
    rows, _ = bench(bundle, tmp_path / "out", "--plugins", "app_single,hypervisor_kvm", "--peers", "",
                    "--runs", "1", "--density", "0")
    assert rows["rt hypervisor_kvm"]["status"] == "not applicable"
    assert "cannot join the host's network namespace" in rows["rt hypervisor_kvm"]["note"]
    assert rows["rt app_single"]["status"] == "ok"
    assert rows["rt app_single"]["metrics"]["roundtrip"]["n"] == 1
    table = (tmp_path / "out" / "table.txt").read_text()
    assert "rt hypervisor_kvm *  vm" in table and "not applicable: config.json: $.linux.namespaces" in table


def test_missing_peers_are_skipped_with_a_note(make_bundle, tmp_path):
    # With nothing on PATH, runc and crun are not found: their rows say so, rt's still runs.
    rows, _ = bench(make_bundle(["true"]), tmp_path / "out", "--plugins", "app_single", "--runs", "1",
                    "--density", "0", env={**os.environ, "PATH": "/nonexistent"})
    assert rows["runc"]["status"] == rows["crun"]["status"] == "skipped"
    assert rows["runc"]["note"] == "runc is not installed" and rows["crun"]["note"] == "crun is not installed"
    assert rows["rt app_single"]["status"] == "ok"
    assert "runc             app    skipped: runc is not installed" in (tmp_path / "out" / "table.txt").read_text()


def test_system_level_against_lxc(make_bundle, tmp_path):
    if not shutil.which("lxc-start"):
        pytest.fail("LXC is missing: run scripts/setup")
    def run_tmpfs(cfg):
        cfg["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})
    bundle = make_bundle(["true"], edit=run_tmpfs)
    pivots = set(glob.glob("/sys/fs/cgroup/*/lxc.pivot"))
    rows, _ = bench(bundle, tmp_path / "out", "--plugins", "lxc_system", "--runs", "1", "--density", "2")
    assert set(rows) == {"rt lxc_system", "LXC"}
    for row in rows.values():
        assert row["status"] == "ok" and not row["errors"], row
        assert row["metrics"]["exec"]["n"] == 1 and row["density"]["started_in_window"] == 2
    lxc_mem = rows["LXC"]["memory_parts"][0]
    assert lxc_mem["helpers"] == 1 and lxc_mem["helper_pss_kib"] > 0  # LXC's monitor, outside the cgroup
    assert set(glob.glob("/sys/fs/cgroup/*/lxc.pivot")) == pivots
    assert processes_with(b"lxc-start", b"rtbench-") == [] and processes_with(b"[lxc monitor]", b"rtbench-") == []


def test_vm_level_against_bare_qemu(make_bundle, tmp_path):
    bundle = make_bundle(["true"])
    rows, _ = bench(bundle, tmp_path / "out", "--plugins", "hypervisor_kvm", "--runs", "1", "--density", "1")
    assert set(rows) == {"rt hypervisor_kvm", "bare QEMU"}
    vm, bare = rows["rt hypervisor_kvm"], rows["bare QEMU"]
    assert vm["status"] == bare["status"] == "ok", (vm, bare)
    assert vm["metrics"]["exec"]["n"] == 1 and "exec" in bare["not_applicable"]
    # a VM's memory is mostly QEMU's: far above any container's
    assert vm["metrics"]["memory"]["min"] > 32 * 1024 and bare["metrics"]["memory"]["min"] > 32 * 1024
    assert processes_with(b"qemu-system", b"rtbench-") == []


def test_ctrl_c_removes_every_instance(make_bundle, tmp_path):
    """Interrupted while the density ramp holds several instances of rt and runc up."""
    bundle = make_bundle(["true"])
    sleepers = set(processes_with(b"sleep\x001000000"))
    p = subprocess.Popen([runtime_path(), "bench", "-o", str(tmp_path / "out"), "--plugins", "app_single",
                          "--peers", "runc", "--runs", "1", "--density", "6", "--window", "120", "--core", "warm",
                          bundle],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "runc: density 4 up" not in seen and time.monotonic() < deadline and p.poll() is None:
        seen += p.stderr.readline()
    assert "runc: density 4 up" in seen, seen
    live = leftovers(p.pid)
    assert len(live["cgroups"]) >= 4 and set(processes_with(b"sleep\x001000000")) - sleepers
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; every instance was removed" in err
    assert leftovers(p.pid) == {"processes": [], "cgroups": [], "links": []}
    assert set(processes_with(b"sleep\x001000000")) <= sleepers
    assert not glob.glob(f"/tmp/rt-bench.*/**/rtbench-{p.pid}-*", recursive=True)
    assert not (tmp_path / "out" / "results.json").exists()
