"""OCI conformance gaps found by review (issue 13, item 9): each against runc too where it can."""
import json
import os
import subprocess
import time

import pytest

from conftest import REPO, base_config, is_rt, write_bundle

pytestmark = pytest.mark.root


def test_rootfs_propagation_shared(runtime, make_bundle, no_leaks):
    """pivot_root refuses a new root under shared mounts (EINVAL); the runtime makes them
    private first and applies the propagation after."""
    bundle = make_bundle(["awk", "$5 == \"/\"", "/proc/self/mountinfo"],
                         edit=lambda cfg: cfg["linux"].update(rootfsPropagation="shared"))
    p = runtime("run", "--bundle", bundle, "rshared")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[4] == "/", p.stdout
    if is_rt(runtime.path):
        assert "shared:" in p.stdout.split(" - ")[0], p.stdout


@pytest.mark.parametrize("mode,shown", [(0o660, "crw-rw----"), (0o666, "crw-rw-rw-"), (0o600, "crw-------")])
def test_device_nodes_get_the_mode_asked_for(runtime, make_bundle, mode, shown, no_leaks):
    """mknod applies the umask (0022): a 0660 node came out 0640."""
    def edit(cfg):
        cfg["linux"]["devices"] = [{"path": "/dev/rtnull", "type": "c", "major": 1, "minor": 3, "fileMode": mode,
                                    "uid": 0, "gid": 0}]
    p = runtime("run", "--bundle", make_bundle(["ls", "-l", "/dev/rtnull"], edit=edit), "devmode")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == shown, p.stdout


def no_mount_ns(cfg):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    cfg["linux"]["maskedPaths"], cfg["linux"]["readonlyPaths"] = [], []


def test_masked_paths_need_a_mount_namespace(runtime, make_bundle, no_leaks):
    """They would be mounts over the caller's own paths: refused, in runc's words."""
    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    p = runtime("run", "--bundle", make_bundle(["true"], edit=edit), "masknomnt")
    assert p.returncode != 0
    assert "unable to restrict sys entries without a private MNT namespace" in p.stderr, p.stderr


def test_without_a_mount_namespace(runtime, make_bundle, no_leaks):
    """No mount namespace of its own: the spec's mounts (so /proc/self/fd) are made under the
    rootfs in the caller's namespace, as runc and crun make them, and rt removes them at delete
    (runc and crun leave them, so this one is rt's)."""
    if not is_rt(runtime.path):
        pytest.skip("runc leaves the container's mounts in the caller's mount namespace")
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", "ls /proc/self/fd | wc -l"], edit=no_mount_ns), "nomntns")
    assert (p.returncode, p.stdout) == (0, "4\n"), p.stderr  # 0-2 and ls's own

    runtime.create("nomnt2", make_bundle(["sleep", "100"], edit=no_mount_ns), check=True)
    runtime("start", "nomnt2", check=True)
    p = runtime("exec", "nomnt2", "sh", "-c", "ls /proc/self/fd | wc -l")
    assert (p.returncode, p.stdout) == (0, "4\n"), p.stderr
    runtime("delete", "--force", "nomnt2", check=True)


def test_without_a_mount_namespace_delete_touches_only_its_mounts(runtime, tmp_path, no_leaks):
    """The container moves a directory that holds one of its mounts and plants a symlink to a
    host mount in its place: delete unmounts its own mount (found by mount id), not the host's."""
    if not is_rt(runtime.path):
        pytest.skip("runc leaves the container's mounts in the caller's mount namespace")
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    host = tmp_path / "hostmnt"
    (host / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "rt-test-host", str(host / "sub")], check=True)
    try:
        cfg = base_config(str(rootfs), ["sh", "-c", f"mv /data /data.old && ln -s {host} /data && sleep 100"])
        cfg["root"]["readonly"] = False
        no_mount_ns(cfg)
        cfg["mounts"].append({"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs", "options": []})
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
        runtime.create("moved", str(tmp_path / "b"), check=True)
        runtime("start", "moved", check=True)
        for _ in range(100):
            if (rootfs / "data").is_symlink():
                break
            time.sleep(0.05)
        runtime("delete", "--force", "moved", check=True)
        mounts = open("/proc/self/mountinfo").read()
        assert f" {host}/sub " in mounts, "the host's mount was unmounted"
        assert str(rootfs) not in mounts, "the container's mounts were left"
    finally:
        subprocess.run(["umount", str(host / "sub")])


def test_a_filter_that_kills_execveat(runtime, make_bundle, no_leaks):
    """A seccomp profile may forbid execveat outright; the workload still starts (execve is
    never forbidden, or nothing could start)."""
    def edit(cfg):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_KILL"}]}
    bundle = make_bundle(["sh", "-c", "echo started"], edit=edit)
    p = runtime("run", "--bundle", bundle, "noexecveat")
    assert (p.returncode, p.stdout) == (0, "started\n"), p.stderr
    runtime.create("noexecveat2", make_bundle(["sleep", "100"], edit=edit), check=True)
    runtime("start", "noexecveat2", check=True)
    p = runtime("exec", "noexecveat2", "echo", "exec-started")
    assert (p.returncode, p.stdout) == (0, "exec-started\n"), p.stderr
    runtime("delete", "--force", "noexecveat2", check=True)


def test_a_failed_mount_names_its_destination(runtime, make_bundle, no_leaks):
    def edit(cfg):
        cfg["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=abc"]})
    p = runtime("run", "--bundle", make_bundle(["true"], edit=edit), "badmount")
    assert p.returncode != 0 and "/mnt" in p.stderr, p.stderr
    if is_rt(runtime.path):
        assert "/proc/self/fd" not in p.stderr and "Invalid argument" in p.stderr, p.stderr


def test_sysctl_keys_in_slash_form(runtime, make_bundle, no_leaks):
    """A key with slashes is a path as it is (an interface name may hold a dot)."""
    def edit(cfg):
        cfg["linux"]["sysctl"] = {"net/ipv4/ip_forward": "1", "net.ipv4.ip_default_ttl": "33"}
    p = runtime("run", "--bundle", make_bundle(["cat", "/proc/sys/net/ipv4/ip_forward",
                                                "/proc/sys/net/ipv4/ip_default_ttl"], edit=edit), "slashsysctl")
    assert (p.returncode, p.stdout.split()) == (0, ["1", "33"]), p.stderr


def rt_only(runtime):
    if not is_rt(runtime.path):
        pytest.skip("runc 1.1.5 (runtime-spec 1.0.2) ignores this runtime-spec 1.2 field")


def test_scheduler_io_priority_and_cpu_affinity(runtime, make_bundle, no_leaks):
    """process.scheduler, ioPriority and execCPUAffinity apply to the workload, and to an exec."""
    rt_only(runtime)

    def edit(cfg):
        cfg["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
        cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
        cfg["process"]["execCPUAffinity"] = {"final": "0"}
    look = "cut -d' ' -f19,41 /proc/self/stat; grep Cpus_allowed_list /proc/self/status"
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", look], edit=edit), "sched")
    assert p.returncode == 0, p.stderr
    nice_policy, cpus = p.stdout.splitlines()
    assert nice_policy.split() == ["7", "3"], p.stdout  # nice 7, SCHED_BATCH
    assert cpus.split()[-1] == "0", p.stdout


def test_personality_linux32(runtime, make_bundle, no_leaks):
    rt_only(runtime)
    bundle = make_bundle(["uname", "-m"], edit=lambda cfg: cfg["linux"].update(personality={"domain": "LINUX32"}))
    p = runtime("run", "--bundle", bundle, "pers32")
    assert (p.returncode, p.stdout.strip()) == (0, "i686"), p.stderr


def test_time_offsets_in_a_time_namespace(runtime, make_bundle, no_leaks):
    rt_only(runtime)

    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 400, "nanosecs": 0}}
    p = runtime("run", "--bundle", make_bundle(["cat", "/proc/uptime"], edit=edit), "timens")
    assert p.returncode == 0, p.stderr
    assert float(p.stdout.split()[0]) > 86400 * 400, p.stdout
    p = runtime("run", "--bundle", make_bundle(["true"], edit=lambda cfg: cfg["linux"].update(
        timeOffsets={"boottime": {"secs": 1}})), "notimens")
    assert p.returncode != 0 and "needs a new time namespace" in p.stderr, p.stderr


def test_intel_rdt_is_refused_not_ignored(runtime, make_bundle, no_leaks):
    rt_only(runtime)
    bundle = make_bundle(["true"], edit=lambda cfg: cfg["linux"].update(intelRdt={"closID": "x"}))
    p = runtime("run", "--bundle", bundle, "rdt")
    assert p.returncode != 0 and "intelRdt" in p.stderr, p.stderr


def test_without_a_mount_namespace_delete_spares_a_mount_that_reused_an_id(runtime, tmp_path, no_leaks):
    """mountinfo's mount ids are reused: one of the container's mounts goes away and a host mount
    gets its id; delete must not take the host's for the container's (unique ids, under the rootfs)."""
    if not is_rt(runtime.path):
        pytest.skip("runc leaves the container's mounts in the caller's mount namespace")
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    cfg = base_config(str(rootfs), ["sleep", "100"])
    no_mount_ns(cfg)
    runtime.create("reuse", write_bundle(tmp_path / "b", cfg), check=True)
    ours = [line.split() for line in open("/proc/self/mountinfo") if f" {rootfs}/tmp " in line]
    assert ours, "the container's /tmp is not mounted"
    subprocess.run(["umount", str(rootfs / "tmp")], check=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "rt-test-victim", str(victim)], check=True)
    try:
        (victim / "precious").write_text("x")
        runtime("delete", "--force", "reuse", check=True)
        assert (victim / "precious").exists(), "delete unmounted the host's mount"
        assert str(rootfs) not in open("/proc/self/mountinfo").read(), "the container's mounts were left"
    finally:
        subprocess.run(["umount", str(victim)])
