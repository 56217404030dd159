"""rt-specific checks of app_single: cgroups, namespaces, mounts, plugins, bad input."""
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, base_config, is_rt, runtime_path

pytestmark = pytest.mark.root

if not is_rt(runtime_path()):
    pytest.skip("rt-specific tests (RT_RUNTIME points elsewhere)", allow_module_level=True)


def cgroup_file(ctrl_v1: str, name_v1: str, name_v2: str, path: str) -> str:
    from rt.core.cgroups import Layout
    layout = Layout.detect()
    if layout.mode == "v2":
        return os.path.join(layout.unified, path.lstrip("/"), name_v2)
    return os.path.join(layout.v1[ctrl_v1], path.lstrip("/"), name_v1)


def test_cgroup_limits_applied_and_removed(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["cgroupsPath"] = "/rt-test/limits"
        c["linux"]["resources"] = {"memory": {"limit": 33554432}, "pids": {"limit": 42},
                                   "cpu": {"quota": 50000, "period": 100000, "shares": 512}}
    runtime.create("cg", make_bundle(["sleep", "100"], edit=edit), check=True)
    path = "/rt-test/limits"
    mem = open(cgroup_file("memory", "memory.limit_in_bytes", "memory.max", path)).read().strip()
    pids = open(cgroup_file("pids", "pids.max", "pids.max", path)).read().strip()
    assert (mem, pids) == ("33554432", "42")
    from rt.core.cgroups import Cgroup, Layout
    if Layout.detect().mode == "v2":
        assert open(cgroup_file("cpu", "", "cpu.max", path)).read().split() == ["50000", "100000"]
    else:
        assert open(cgroup_file("cpu", "cpu.cfs_quota_us", "", path)).read().strip() == "50000"
        assert open(cgroup_file("cpu", "cpu.shares", "", path)).read().strip() == "512"
    pid = runtime.state("cg")["pid"]
    procs = open(cgroup_file("pids", "cgroup.procs", "cgroup.procs", path)).read().split()
    assert str(pid) in procs
    # the container sees its own limit through its /sys/fs/cgroup
    p = runtime("exec", "cg", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert p.stdout.strip() == "42", p.stderr
    runtime("delete", "--force", "cg", check=True)
    assert not os.path.exists(os.path.dirname(cgroup_file("pids", "pids.max", "pids.max", path)))
    for d in set(Cgroup("/rt-test").dirs().values()):  # the parent is ours to remove, as with runc
        os.rmdir(d)


def test_pids_limit_enforced(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["resources"] = {"pids": {"limit": 5}}
    runtime.create("pl", make_bundle(["sleep", "100"], edit=edit), check=True)
    runtime("start", "pl", check=True)
    p = runtime("exec", "pl", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 100 >/dev/null 2>&1 & done")
    assert p.returncode != 0 and "can't fork" in p.stderr
    d = os.path.dirname(cgroup_file("pids", "pids.max", "pids.max", "/rt/pl"))
    # at the limit: init + sh + 3 sleeps = 5; sh then exits on the failed fork
    assert int(open(os.path.join(d, "pids.current")).read()) == 4
    assert "max 0" not in open(os.path.join(d, "pids.events")).read()
    runtime("delete", "--force", "pl", check=True)


def test_update_resources(runtime, make_bundle, tmp_path, no_leaks):
    runtime.create("up", make_bundle(["sleep", "100"]), check=True)
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 77}}))
    runtime("update", "--resources", str(f), "up", check=True)
    p = runtime("exec", "up", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert p.stdout.strip() == "77"
    f.write_text("[1, 2]")
    assert runtime("update", "--resources", str(f), "up").returncode != 0
    runtime("delete", "--force", "up", check=True)
    assert runtime("update", "--resources", str(f), "up").returncode != 0


def test_join_namespace_by_path(runtime, make_bundle, no_leaks):
    runtime.create("owner", make_bundle(["sleep", "100"]), check=True)
    owner = runtime.state("owner")["pid"]
    netns = f"/proc/{owner}/ns/net"

    def edit(c):
        c["linux"]["namespaces"] = [ns if ns["type"] != "network" else {"type": "network", "path": netns}
                                    for ns in c["linux"]["namespaces"]]
    p = runtime("run", "--bundle", make_bundle(["readlink", "/proc/self/ns/net"], edit=edit), "joiner")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == os.readlink(netns)
    runtime("delete", "--force", "owner", check=True)


def test_namespace_path_of_wrong_type(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/uts"})
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n.get("path") or n["type"] != "network"]
    p = runtime.create("wrongns", make_bundle(edit=edit))
    assert p.returncode != 0 and "$.linux.namespaces" in p.stderr


def test_mount_symlink_resolves_inside_rootfs(runtime, tmp_path, no_leaks):
    """A mount destination that is a symlink to a host path lands inside the rootfs."""
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    victim = tmp_path / "host-victim"
    victim.mkdir()
    (victim / "keep").write_text("host data")
    os.symlink(str(victim), rootfs / "escape")  # absolute link pointing at a host dir
    cfg = base_config(str(rootfs), ["sh", "-c", "echo inside > /escape/marker; ls /escape"])
    cfg["root"]["readonly"] = False
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/tmp"]
    cfg["mounts"].append({"destination": "/escape", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    p = runtime("run", "--bundle", str(bundle), "esc")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["marker"]  # a fresh tmpfs, not the host dir
    assert sorted(os.listdir(victim)) == ["keep"]
    assert (rootfs / str(victim).lstrip("/")).is_dir()  # made inside the rootfs


def test_bind_mount(runtime, make_bundle, tmp_path, no_leaks):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "file").write_text("from host")

    def edit(c):
        c["mounts"].append({"destination": "/mnt/shared", "type": "bind", "source": str(src),
                            "options": ["rbind", "ro"]})
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", "cat /mnt/shared/file; touch /mnt/shared/x || echo ro"],
                                                 edit=edit), "bm")
    assert p.stdout.split("\n")[:2] == ["from host", "ro"] or "ro" in p.stdout, p.stderr
    assert not (src / "x").exists()


def test_missing_capability_is_logged_not_fatal(runtime, make_bundle, tmp_path, no_leaks):
    from rt.core.plan import host_capabilities
    bnd, _ = host_capabilities()
    log = tmp_path / "log.json"

    def edit(c):
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_SYS_RESOURCE")
    p = subprocess.run([runtime.path, "--root", runtime.root, "--log", str(log), "--log-format", "json", "run",
                        "--bundle", make_bundle(["sh", "-c", "grep CapEff /proc/self/status"], edit=edit), "caps"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    eff = int(p.stdout.split()[1], 16)
    if bnd & (1 << 24):
        assert eff & (1 << 24)
    else:  # this host lacks CAP_SYS_RESOURCE: kept what exists, logged the rest
        assert not eff & (1 << 24) and eff & (1 << 5)  # CAP_KILL kept
        warnings = [json.loads(x) for x in log.read_text().splitlines()]
        assert any(w["level"] == "warning" and "CAP_SYS_RESOURCE" in w["msg"] for w in warnings)
        assert p.stderr == ""


def test_plugin_selection_errors(runtime, make_bundle, no_leaks):
    def ann(value):
        return lambda c: c.setdefault("annotations", {}).update({"rt.plugin": value})
    p = runtime.create("u", make_bundle(edit=ann("no-such-kind")))
    assert p.returncode != 0 and "unknown plugin 'no-such-kind'" in p.stderr
    p = runtime("--plugin", "app_single", "create", "--bundle", make_bundle(edit=ann("lxc_system")), "c",
                stdout=subprocess.DEVNULL)
    assert p.returncode != 0 and "conflict" in p.stderr
    p = runtime.create("ok", make_bundle(["sleep", "10"], edit=ann("app_single")), check=True)
    runtime("delete", "--force", "ok", check=True)
    assert runtime("list", "-q").stdout == ""


def test_third_party_plugin(runtime, make_bundle, tmp_path, no_leaks):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), os.path.join(REPO, "tests", "data", "rt-example-plugin")], check=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    feats = json.loads(runtime("features", env=env, check=True).stdout)
    plugins = {p["name"]: p for p in feats["rt"]["plugins"]}
    assert plugins["example"]["version"] == "0.3.1" and plugins["example"]["distribution"] == "0.3.1"
    assert "app_single" in plugins and "example-hello" in feats["rt"]["verbs"]

    def ann(c):
        c["annotations"] = {"rt.plugin": "example"}
    b = make_bundle(["sleep", "100"], edit=ann)
    runtime.create("tp", b, env=env, check=True)
    assert runtime("state", "tp", env=env, check=True).stdout and runtime.state("tp")["status"] == "created"
    runtime("start", "tp", env=env, check=True)
    assert runtime.state("tp")["status"] == "running"
    assert runtime("example-hello", "x", env=env, check=True).stdout == "hello from the example plugin x\n"
    runtime("kill", "tp", "KILL", env=env, check=True)
    time.sleep(0.1)
    runtime("delete", "tp", env=env, check=True)
    # disabled by the operator: not selectable, and its name is reported
    off = dict(env, RT_DISABLED_PLUGINS="example")
    p = runtime.create("tp2", b, env=off)
    assert p.returncode != 0 and "disabled" in p.stderr
    p = runtime.create("tp3", b, env=dict(env, RT_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert p.returncode != 0 and "unknown plugin 'example'" in p.stderr
    # a plugin can reject a spec through rt_check_spec
    def reject(c):
        c["annotations"] = {"rt.plugin": "example", "example.reject": "yes"}
    p = runtime.create("tp4", make_bundle(edit=reject), env=env)
    assert p.returncode != 0 and "rejected by annotation" in p.stderr


_PATHS = [("process", "args"), ("process", "cwd"), ("process", "env"), ("process", "user", "uid"),
          ("root", "path"), ("hostname",), ("linux", "namespaces"), ("mounts",), ("ociVersion",),
          ("process", "rlimits"), ("linux", "resources"), ("process", "capabilities", "bounding")]
_JUNK = st.one_of(st.integers(-5, 2**70), st.text(max_size=5), st.booleans(), st.none(),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_PATHS), junk=_JUNK)
def test_garbage_configs_fail_cleanly(runtime, make_bundle, where, junk):
    """A config broken anywhere fails with one clear line and leaves nothing behind."""
    def edit(c):
        node = c
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = junk
    p = runtime.create("hx", make_bundle(["true"], edit=edit))
    if p.returncode == 0:  # the junk happened to be valid (e.g. a string hostname)
        runtime("delete", "--force", "hx", check=True)
        return
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0], p.stderr
    assert runtime("list", "-q").stdout == ""
    assert not os.path.exists(os.path.join(runtime.root, "hx"))


def test_block_io_throttle(runtime, make_bundle, no_leaks):
    devs = [d for d in sorted(os.listdir("/sys/block")) if not d.startswith(("loop", "ram", "zram"))]
    if not devs:
        pytest.skip("no block device on this host")
    major, minor = open(f"/sys/block/{devs[0]}/dev").read().strip().split(":")

    def edit(c):
        c["linux"]["resources"] = {"blockIO": {"throttleReadBpsDevice": [
            {"major": int(major), "minor": int(minor), "rate": 1048576}]}}
    runtime.create("bio", make_bundle(["sleep", "100"], edit=edit), check=True)
    from rt.core.cgroups import Layout
    layout = Layout.detect()
    if layout.mode == "v2":
        text = open(os.path.join(layout.unified, "rt/bio/io.max")).read()
        assert f"{major}:{minor} rbps=1048576" in text
    else:
        text = open(os.path.join(layout.v1["blkio"], "rt/bio/blkio.throttle.read_bps_device")).read()
        assert f"{major}:{minor} 1048576" in text
    runtime("delete", "--force", "bio", check=True)


def test_idmapped_mount(runtime, make_bundle, tmp_path, no_leaks):
    """An idmapped bind: on-disk uid 1000 appears as 0 (mapping containerID 1000 -> hostID 0).
    runc 1.1 has no idmapped mounts, so this one is rt's own."""
    src = tmp_path / "data"
    src.mkdir()
    (src / "owned").write_text("x")
    os.chown(src / "owned", 1000, 1000)

    def edit(c):
        c["mounts"].append({"destination": "/idm", "type": "bind", "source": str(src), "options": ["bind", "idmap"],
                            "uidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
                            "gidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}]})
    p = runtime("run", "--bundle", make_bundle(["stat", "-c", "%u:%g", "/idm/owned"], edit=edit), "idm")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0:0"
    assert os.stat(src / "owned").st_uid == 1000  # nothing changed on disk


def test_dev_symlink_in_rootfs_cannot_reach_the_host(runtime, tmp_path, no_leaks):
    """A rootfs whose /dev links to a host path: /dev and its links land inside the rootfs."""
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    victim = tmp_path / "host-dev"
    victim.mkdir()
    os.rmdir(rootfs / "dev")
    os.symlink(str(victim), rootfs / "dev")
    cfg = base_config(str(rootfs), ["sh", "-c", "ls /dev/null /dev/fd >/dev/null && echo ok"])
    cfg["root"]["readonly"] = False
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/tmp"]  # it would cover the link's target
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    p = runtime("run", "--bundle", str(bundle), "devlink")
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    assert os.listdir(victim) == []


def test_update_cannot_write_outside_the_cgroup(runtime, make_bundle, tmp_path, no_leaks):
    runtime.create("upx", make_bundle(["sleep", "100"]), check=True)
    f = tmp_path / "res.json"
    for key in ("../../../../tmp/rt-escape", "/proc/sysrq-trigger"):
        f.write_text(json.dumps({"unified": {key: "1"}}))
        p = runtime("update", "--resources", str(f), "upx")
        assert p.returncode != 0 and "unified" in p.stderr
    assert not os.path.exists("/tmp/rt-escape")
    runtime("delete", "--force", "upx", check=True)


def test_cgroups_path_cannot_escape(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["cgroupsPath"] = "/../../../tmp/rt-cg-escape"
    runtime.create("cgx", make_bundle(["sleep", "100"], edit=edit), check=True)
    assert not os.path.exists("/tmp/rt-cg-escape")
    from rt.core.cgroups import Cgroup
    cg = Cgroup("/tmp/rt-cg-escape")
    assert cg.exists() and runtime.state("cgx")["pid"] in cg.procs()
    runtime("delete", "--force", "cgx", check=True)
    for d in sorted(set(Cgroup("/tmp").dirs().values()), key=len, reverse=True):
        if os.path.isdir(d):
            os.rmdir(d)


def test_idmapped_mount_in_a_user_namespace(runtime, make_bundle, tmp_path, no_leaks):
    """The main use: host files owned by 0 appear as the container's root (host 100000)."""
    # the mount point must exist: container root (host 100000) cannot mkdir in a root-owned rootfs
    src = tmp_path / "shared"
    src.mkdir()
    (src / "f").write_text("x")

    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["mounts"].append({"destination": "/root", "type": "bind", "source": str(src), "options": ["bind", "idmap"],
                            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", "stat -c %u:%g /root/f; echo y >> /root/f && echo wrote"],
                                                 edit=edit), "idmu")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0:0", "wrote"]
    assert os.stat(src / "f").st_uid == 0 and (src / "f").read_text() == "xy\n"


def test_delete_force_without_its_plugin(runtime, make_bundle, tmp_path, no_leaks):
    """A container whose plugin was removed since create can still be force-deleted."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    os.path.join(REPO, "tests", "data", "rt-example-plugin")], check=True)
    env = dict(os.environ, PYTHONPATH=str(site))

    def ann(c):
        c["annotations"] = {"rt.plugin": "example"}
    runtime.create("orphan", make_bundle(["sleep", "100"], edit=ann), env=env, check=True)
    pid = runtime.state("orphan")["pid"]
    assert runtime("delete", "orphan").returncode != 0  # no plugin, no --force: refuse
    p = runtime("delete", "--force", "orphan")
    assert p.returncode == 0, p.stderr
    assert runtime("state", "orphan").returncode != 0
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"


def test_update_takes_runcs_flags(runtime, make_bundle, no_leaks):
    """runc's spellings and units: --cpu-share, --memory 100M, --memory-reservation, the
    realtime pair (v1), and a clear refusal of Intel RDT."""
    from rt.core.cgroups import Layout
    runtime.create("uf", make_bundle(["sleep", "100"]), check=True)
    flags = ["--memory", "100M", "--memory-reservation", "50m", "--cpu-share", "512", "--cpu-quota", "50000",
             "--cpu-period", "100000", "--pids-limit", "55"]
    v1 = Layout.detect().mode != "v2"
    if v1:
        flags += ["--cpu-rt-period", "900000", "--cpu-rt-runtime", "0"]
    runtime("update", *flags, "uf", check=True)
    read = lambda *a: open(cgroup_file(*a, "/rt/uf")).read().strip()  # noqa: E731
    assert read("memory", "memory.limit_in_bytes", "memory.max") == str(100 << 20)
    assert read("memory", "memory.soft_limit_in_bytes", "memory.low") == str(50 << 20)
    assert read("pids", "pids.max", "pids.max") == "55"
    if v1:
        assert read("cpu", "cpu.shares", "cpu.weight") == "512"
        assert read("cpu", "cpu.rt_period_us", "cpu.max") == "900000"
    p = runtime("update", "--l3-cache-schema", "L3:0=f", "uf")
    assert p.returncode == 1 and "Intel RDT" in p.stderr
    p = runtime("update", "--memory", "12q", "uf")
    assert p.returncode == 1 and "invalid value for --memory" in p.stderr
    runtime("delete", "--force", "uf", check=True)


def test_events_as_runc(runtime, make_bundle, no_leaks):
    """`events --stats` prints one stats event; `events --interval` streams them until the
    container stops; an OOM kill is an `oom` event."""
    runtime.create("ev", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "ev", check=True)
    ev = json.loads(runtime("events", "--stats", "ev", check=True).stdout)
    assert (ev["type"], ev["id"]) == ("stats", "ev")
    data = ev["data"]
    assert data["pids"]["current"] >= 1 and data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0 and isinstance(data["memory"]["raw"], dict)
    p = subprocess.Popen([runtime.path, "--root", runtime.root, "events", "--interval", "200ms", "ev"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(p.stdout.readline())
    assert first["type"] == "stats" and first["data"]["pids"]["current"] >= 1
    runtime("kill", "ev", "KILL", check=True)
    assert p.wait(timeout=30) == 0  # it ends with the container
    assert runtime("events", "--interval", "5x", "ev").returncode == 1
    runtime("delete", "ev", check=True)
    p = runtime("events", "--stats", "ev")
    assert p.returncode == 1 and "does not exist" in p.stderr


def test_events_reports_an_oom_kill(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["resources"] = {"memory": {"limit": 16 << 20}}
    runtime.create("oom", make_bundle(["sleep", "100"], edit=edit), check=True)
    runtime("start", "oom", check=True)
    p = subprocess.Popen([runtime.path, "--root", runtime.root, "events", "--interval", "100ms", "oom"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(p.stdout.readline())["type"] == "stats"
    runtime("exec", "oom", "sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}")
    kinds = set()
    deadline = time.monotonic() + 20
    while "oom" not in kinds and time.monotonic() < deadline:
        kinds.add(json.loads(p.stdout.readline())["type"])
    runtime("delete", "--force", "oom", check=True)
    p.wait(timeout=30)
    assert "oom" in kinds


def test_exec_into_an_existing_subgroup(runtime, make_bundle, no_leaks):
    """runc's `exec --cgroup [CONTROLLER:]PATH`: below the container's cgroup, which must exist."""
    from rt.core.cgroups import Cgroup
    runtime.create("xc", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "xc", check=True)
    cg = Cgroup("/rt/xc")
    sub = Cgroup("/rt/xc/side")
    sub.create()
    try:
        p = runtime("exec", "--cgroup", "side", "xc", "cat", "/proc/self/cgroup")
        assert p.returncode == 0, p.stderr
        assert "/side" in p.stdout
        if cg.layout.mode != "v2":
            p = runtime("exec", "--cgroup", "pids:side", "xc", "cat", "/proc/self/cgroup")
            lines = dict(line.split(":", 2)[1:] for line in p.stdout.splitlines())
            assert lines["pids"].endswith("/side") and not lines["memory"].endswith("/side"), p.stdout
        for bad in ("nosuch", "../..", "nosuchctl:side"):
            p = runtime("exec", "--cgroup", bad, "xc", "true")
            assert p.returncode == 1 and "--cgroup" in p.stderr, (bad, p.stderr)
    finally:
        runtime("delete", "--force", "xc", check=True)
        sub.destroy() if sub.exists() else None


def test_checkpoint_says_why_criu_cannot_work_here(runtime, make_bundle, tmp_path, no_leaks):
    """Where `criu check` fails (this host's kernel: the vDSO), checkpoint says so and leaves the
    container running; tests/integration/test_checkpoint.py runs CRIU where it works (the guest)."""
    import shutil
    criu = shutil.which("criu") or "/usr/sbin/criu"
    if not os.path.exists(criu):
        pytest.fail("criu is not installed (scripts/setup installs it)")
    if subprocess.run([criu, "check"], capture_output=True).returncode == 0:
        pytest.skip("criu works on this host: test_checkpoint.py covers it")
    runtime.create("cp", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "cp", check=True)
    p = runtime("checkpoint", "--image-path", str(tmp_path / "img"), "cp")
    assert p.returncode == 1 and "criu check fails on this host" in p.stderr, p.stderr
    assert runtime.state("cp")["status"] == "running"
    assert not os.path.exists(tmp_path / "img")
    runtime("delete", "-f", "cp", check=True)
