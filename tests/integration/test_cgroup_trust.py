"""A container must not reach its own limits, and cgroup detection must trust the filesystem,
not mountinfo. Black-box where it can be: RT_RUNTIME=runc passes the app container checks."""
import os
import subprocess
import uuid

import pytest

from conftest import is_rt, runtime_path
from test_escapes import system_bundle

pytestmark = pytest.mark.root
# a real pure v2 host (scripts/test-in-vm's guest); elsewhere the v2 tests mount cgroup2 privately
REAL_V2 = os.path.ismount("/sys/fs/cgroup") and os.path.exists("/sys/fs/cgroup/cgroup.controllers")
MOUNT_V2 = "true" if REAL_V2 else "mount -t cgroup2 none /sys/fs/cgroup"


def nsdelegate() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/sys/fs/cgroup" and "nsdelegate" in line.split(" - ")[1] for line in f)

MiB = 1024 * 1024
ATTACK = """
for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max; do
  [ -e $f ] && (echo 1073741824 > $f) 2>/dev/null && echo WROTE $f
done
for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do
  [ -e $f ] && (echo max > $f) 2>/dev/null && echo WROTE $f
done
for d in /sys/fs/cgroup/memory /sys/fs/cgroup/pids /sys/fs/cgroup; do
  mkdir $d/escape 2>/dev/null && echo MKDIR $d
done
cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids/pids.max \
    /sys/fs/cgroup/pids.max 2>/dev/null
echo done
"""


def limited(cfg):
    cfg["linux"]["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 100}}


def test_app_container_cannot_raise_its_limits(runtime, make_bundle, no_leaks):
    """v1/hybrid: every controller under /sys/fs/cgroup is read-only, as the spec's mount says."""
    cid = "lim-" + uuid.uuid4().hex[:6]
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", ATTACK], edit=limited), cid)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert not [w for w in out if w in ("WROTE", "MKDIR")], p.stdout
    assert out[-1] == "done" and str(64 * MiB) in out and "100" in out, p.stdout


def in_private_mount_ns(setup: str, cmd: list[str]) -> subprocess.CompletedProcess:
    """Run `cmd` after `setup` (shell) in a private mount namespace of its own."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup + ' && exec "$@"', "sh",
                           *cmd], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_pure_v2_app_container_cannot_raise_its_limits(runtime, make_bundle, no_leaks):
    """Pure v2, as most hosts have it: the unified hierarchy mounted at /sys/fs/cgroup (here in a
    private mount namespace; this host's v2 has no controllers, so the attack is on the tree)."""
    cid = "v2-" + uuid.uuid4().hex[:6]
    bundle = make_bundle(["sh", "-c", "(echo 1 > /sys/fs/cgroup/cgroup.procs) 2>/dev/null && echo WROTE procs\n" + ATTACK])
    p = in_private_mount_ns(MOUNT_V2, [runtime.path, "--root", runtime.root, "run", "--bundle", bundle, cid])
    assert p.returncode == 0, p.stderr
    assert "WROTE" not in p.stdout and "MKDIR" not in p.stdout, p.stdout
    assert p.stdout.split()[-1] == "done"
    assert not [d for d in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{d}/rt/{cid}")]


def test_a_filesystem_over_the_unified_mount_is_not_taken_for_cgroup2(runtime, make_bundle, no_leaks):
    """mountinfo still lists cgroup2 at /sys/fs/cgroup/unified under a tmpfs; the runtime must see
    the tmpfs (statfs magic / st_dev), treat the host as v1, and work."""
    if not os.path.ismount("/sys/fs/cgroup/unified"):
        pytest.skip("hybrid hosts only: there is no unified mount to hide here")
    cid = "tmpfs-" + uuid.uuid4().hex[:6]
    bundle = make_bundle(["sh", "-c", "echo ran"])
    p = in_private_mount_ns("mount -t tmpfs none /sys/fs/cgroup/unified",
                            [runtime.path, "--root", runtime.root, "run", "--bundle", bundle, cid])
    assert (p.returncode, p.stdout) == (0, "ran\n"), p.stderr
    assert not [d for d in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{d}/rt/{cid}")]


@pytest.mark.skipif(not is_rt(runtime_path()), reason="rt's lxc_system plugin")
def test_system_container_writes_only_its_delegated_subtree(runtime, tmp_path, no_leaks):
    """lxc_system: its cgroup is writable (systemd manages its own subtree), but the limits the
    host set are on the parent, out of its sight."""
    cid = "sys-" + uuid.uuid4().hex[:6]
    if REAL_V2:  # as systemd does: its processes into a leaf first, then controllers for the groups below
        own = ("mkdir /sys/fs/cgroup/init && for p in $(cat /sys/fs/cgroup/cgroup.procs); do "  # (cat's own is gone)
               "echo $p > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null; done; echo +memory > "
               "/sys/fs/cgroup/cgroup.subtree_control && mkdir /sys/fs/cgroup/sub && echo 4194304 > "
               "/sys/fs/cgroup/sub/memory.max")
    else:
        own = "mkdir /sys/fs/cgroup/memory/sub && echo 4194304 > /sys/fs/cgroup/memory/sub/memory.limit_in_bytes"
    script = ATTACK + own + " && echo DELEGATED\necho END\n"
    runtime.create(cid, system_bundle(tmp_path, ["/bin/sh", "-c", "(" + script + ") > /run/out; sleep 100"], limited),
                   check=True)
    runtime("start", cid, check=True)
    out = ""
    for _ in range(100):
        out = runtime("exec", cid, "cat", "/run/out").stdout
        if "END" in out:
            break
    try:
        assert "DELEGATED" in out, out  # its own subtree is its to manage
        mem, pids = ((f"/sys/fs/cgroup/rt/{cid}/memory.max", f"/sys/fs/cgroup/rt/{cid}/pids.max") if REAL_V2 else
                     (f"/sys/fs/cgroup/memory/rt/{cid}/memory.limit_in_bytes", f"/sys/fs/cgroup/pids/rt/{cid}/pids.max"))
        with open(mem) as f:
            assert int(f.read()) == 64 * MiB, out
        with open(pids) as f:
            assert f.read().strip() == "100", out
    finally:
        runtime("delete", "--force", cid, check=True)


@pytest.mark.skipif(not is_rt(runtime_path()), reason="rt's lxc_system plugin")
def test_pure_v2_system_container_root_is_below_its_limits(runtime, tmp_path, no_leaks):
    """Pure v2 (cgroup2 at /sys/fs/cgroup, in a private mount namespace here): the system
    container's cgroup namespace and mount are rooted at /rt/ID/ns, so what it writes there
    leaves the files of /rt/ID, where the limits live, as the host set them. With nsdelegate
    (systemd mounts cgroup2 with it) even its own root's files are refused."""
    cid = "sys2-" + uuid.uuid4().hex[:6]
    script = ("echo 7 > /sys/fs/cgroup/cgroup.max.descendants && echo WROTE-OWN; "
              "mkdir /sys/fs/cgroup/sub && echo DELEGATED; cat /proc/self/cgroup; touch /run/ready; sleep 100")
    bundle = system_bundle(tmp_path, ["/bin/sh", "-c", script])
    rt = f"{runtime.path} --root {runtime.root}"
    p = in_private_mount_ns(MOUNT_V2, ["sh", "-c", f"""
        {rt} run -d --bundle {bundle} {cid} </dev/null >/dev/null 2>&1 || exit 1
        for i in $(seq 100); do {rt} exec {cid} test -e /run/ready && break; sleep 0.1; done
        echo parent=$(cat /sys/fs/cgroup/rt/{cid}/cgroup.max.descendants)
        echo payload=$(cat /sys/fs/cgroup/rt/{cid}/ns/cgroup.max.descendants)
        {rt} exec {cid} sh -c 'cat /proc/self/cgroup; ls /sys/fs/cgroup/sub >/dev/null && echo SUB'
        {rt} delete --force {cid}"""])
    assert p.returncode == 0, p.stdout + p.stderr
    own = "max" if REAL_V2 and nsdelegate() else "7"
    assert "parent=max" in p.stdout and f"payload={own}" in p.stdout, p.stdout + p.stderr
    assert "0::/\n" in p.stdout and "SUB" in p.stdout, p.stdout
    assert not os.path.exists(f"/sys/fs/cgroup/unified/rt/{cid}")


def test_devices_are_denied_unless_allowed(runtime, make_bundle, no_leaks):
    """A spec without a deny-all device rule still gets runc's base: deny all, then the default
    list. Without it, CAP_MKNOD made /dev/kmsg and wrote the host's kernel log."""
    def edit(cfg):
        for k in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][k].append("CAP_MKNOD")
        cfg["linux"].pop("resources", None)
    script = ("mknod /dev/kmsg2 c 1 11 && (echo rt-test > /dev/kmsg2) 2>/dev/null && echo WROTE-KMSG; "
              "(echo x > /dev/null) && echo NULL-OK")
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "devdeny")
    assert p.returncode == 0, p.stderr
    assert "WROTE-KMSG" not in p.stdout and "NULL-OK" in p.stdout, p.stdout


def test_a_cgroup_with_processes_is_not_taken_over(runtime, make_bundle, no_leaks):
    """cgroupsPath naming a cgroup in use (a service, or the same id under another --root):
    refused, and its processes live on (rt took it over, and delete killed them)."""
    if not is_rt(runtime.path):
        pytest.skip("runc 1.1.5 only warns, then kills the victim at delete")
    victim_cg = f"/sys/fs/cgroup/{'' if REAL_V2 else 'memory/'}rt-test-victim-{uuid.uuid4().hex[:6]}"
    os.mkdir(victim_cg)
    victim = subprocess.Popen(["sleep", "100"])
    try:
        with open(os.path.join(victim_cg, "cgroup.procs"), "w") as f:
            f.write(str(victim.pid))
        path = "/" + os.path.basename(victim_cg)
        p = runtime("run", "--bundle", make_bundle(["true"], edit=lambda c: c["linux"].update(cgroupsPath=path)),
                    "takeover")
        assert p.returncode != 0 and "container's cgroup is not empty" in p.stderr, p.stderr
        assert victim.poll() is None, "the victim was killed"
        limit = open(os.path.join(victim_cg, "memory.max" if REAL_V2 else "memory.limit_in_bytes")).read().strip()
        assert limit == "max" or int(limit) > 2**40
    finally:
        victim.kill()
        victim.wait()
        name = os.path.basename(victim_cg)
        for d in [d for d in (f"/sys/fs/cgroup/{h}/{name}" for h in ["", *os.listdir("/sys/fs/cgroup")])
                  if os.path.isdir(d)]:
            os.rmdir(d)


@pytest.mark.skipif(not is_rt(runtime_path()), reason="rt's lxc_system plugin")
def test_a_system_container_that_freezes_a_subgroup_is_still_deleted(runtime, tmp_path, no_leaks):
    """It owns its subtree: a v1 subgroup it froze held its tasks unkillable, and delete -f
    failed with EBUSY after 15 s."""
    if not os.path.isdir("/sys/fs/cgroup/freezer"):
        pytest.skip("no v1 freezer hierarchy on this host")
    script = ("mkdir /sys/fs/cgroup/freezer/fz && sleep 1000 & sleep 0.2; echo $! > /sys/fs/cgroup/freezer/fz/cgroup.procs; "
              "echo FROZEN > /sys/fs/cgroup/freezer/fz/freezer.state; touch /run/frozen; sleep 1000")
    runtime.create("fz", system_bundle(tmp_path, ["/bin/sh", "-c", script]), check=True)
    runtime("start", "fz", check=True)
    for _ in range(100):
        if runtime("exec", "fz", "test", "-e", "/run/frozen").returncode == 0:
            break
    assert open("/sys/fs/cgroup/freezer/rt/fz/ns/fz/freezer.state").read().strip() == "FROZEN"
    p = runtime("delete", "--force", "fz", timeout=30)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists("/sys/fs/cgroup/freezer/rt/fz")


def test_parallel_creates_in_one_cgroup_are_refused_but_one(runtime, make_bundle, no_leaks):
    """The emptiness check and the join are one step: of 4 creates naming one cgroupsPath, one
    gets it; deleting it kills no one else's process."""
    if not is_rt(runtime.path):
        pytest.skip("runc 1.1.5 lets them all in")
    from concurrent.futures import ThreadPoolExecutor
    path = f"/rt-test-shared-{uuid.uuid4().hex[:6]}"
    bundle = make_bundle(["sleep", "100"], edit=lambda c: c["linux"].update(cgroupsPath=path))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: runtime.create(f"share{i}", bundle), range(4)))
    won = [i for i, p in enumerate(results) if p.returncode == 0]
    assert len(won) == 1, [p.stderr for p in results]
    assert all("container's cgroup is not empty" in p.stderr for p in results if p.returncode), \
        [p.stderr for p in results]
    runtime("delete", "--force", f"share{won[0]}", check=True)
    assert not [h for h in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{h}{path}")]
