"""Rootless: rt run by a plain user, as runc is: `rt spec --rootless`, then `rt run`, with the
state under $XDG_RUNTIME_DIR/rt. Without a cgroup delegated to the user the container runs
without one (and a spec with limits fails); more ids than the user's own go through
newuidmap/newgidmap and /etc/subuid."""
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import runtime_path

pytestmark = pytest.mark.root


def pick_user() -> pwd.struct_passwd:
    """A user with ranges in /etc/subuid (the guest's `rt`), else nobody."""
    try:
        with open("/etc/subuid") as f:
            for line in f:
                name = line.split(":")[0]
                try:
                    return pwd.getpwnam(name)
                except KeyError:
                    continue
    except FileNotFoundError:
        pass
    return pwd.getpwnam("nobody")


USER = pick_user()


class User:
    def __init__(self, home: str):
        self.home, self.run_dir = home, os.path.join(home, "run")
        self.rt = os.path.realpath(runtime_path())

    def __call__(self, *args, cwd=None, root=True, check=False, timeout=60, env=()):
        return self.run([self.rt, *((["--root", os.path.join(self.home, "state")]) if root else []), *args],
                        cwd=cwd, check=check, timeout=timeout, env=env)

    def run(self, argv, cwd=None, check=False, timeout=60, env=()):
        """argv as the user, in a clean environment (env: more NAME=VALUE settings)."""
        cmd = ["setpriv", f"--reuid={USER.pw_uid}", f"--regid={USER.pw_gid}", "--init-groups", "env", "-i",
               "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"HOME={self.home}", f"XDG_RUNTIME_DIR={self.run_dir}", *env,
               *argv]
        # files, not pipes: a detached container keeps the stdio it inherits
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(cmd, cwd=cwd or self.home, stdout=out, stderr=err, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p


@pytest.fixture
def user(busybox_rootfs):
    home = tempfile.mkdtemp(prefix="rt-rootless-", dir="/tmp")
    os.chmod(home, 0o700)
    os.mkdir(os.path.join(home, "run"), 0o700)
    for d in (home, os.path.join(home, "run")):
        os.chown(d, USER.pw_uid, USER.pw_gid)
    u = User(home)
    if u("--version", root=False).returncode != 0:
        shutil.rmtree(home)
        why = f"{USER.pw_name} cannot run {u.rt} (is its Python world-readable? scripts/setup uses Debian's)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    yield u
    for root in (os.path.join(home, "state"), os.path.join(home, "run", "rt")):
        if os.path.isdir(root):
            for cid in os.listdir(root):
                u("--root", root, "delete", "-f", cid, root=False)
    shutil.rmtree(home)


def rootless_bundle(user, busybox_rootfs, args, edit=None) -> str:
    bundle = os.path.join(user.home, "b-" + uuid.uuid4().hex[:6])
    os.mkdir(bundle)
    os.chown(bundle, USER.pw_uid, USER.pw_gid)
    user("spec", "--rootless", cwd=bundle, root=False, check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["root"]["path"] = busybox_rootfs
    cfg["process"].update(terminal=False, args=list(args))
    if edit:
        edit(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return bundle


def test_spec_rootless_then_run_as_a_plain_user(user, busybox_rootfs):
    bundle = rootless_bundle(user, busybox_rootfs, ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname; "
                                                    "ls /dev/null && echo > /dev/null && echo devnull-ok"])
    p = user("run", "--bundle", bundle, "rl-" + uuid.uuid4().hex[:6], root=False)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[0] == "0", out
    assert out[1].split() == ["0", str(USER.pw_uid), "1"], out
    assert out[2] == "rt" and "devnull-ok" in out, out  # rt spec's hostname
    assert os.listdir(os.path.join(user.run_dir, "rt")) == []  # the default root, emptied by run


def test_rootless_lifecycle_exec_and_default_root(user, busybox_rootfs):
    bundle = rootless_bundle(user, busybox_rootfs, ["sleep", "1000"])
    cid = "rlc-" + uuid.uuid4().hex[:6]
    user("create", "--bundle", bundle, cid, root=False, check=True)
    assert os.path.isdir(os.path.join(user.run_dir, "rt", cid))
    user("start", cid, root=False, check=True)
    state = json.loads(user("state", cid, root=False, check=True).stdout)
    assert state["status"] == "running"
    with open(f"/proc/{state['pid']}/status") as f:
        uids = next(line.split()[1:] for line in f if line.startswith("Uid:"))
    assert uids == [str(USER.pw_uid)] * 4  # root in the container is the user outside
    p = user("exec", cid, "sh", "-c", "id -u; cat /proc/1/cmdline", root=False)
    assert p.returncode == 0 and p.stdout.startswith("0\nsleep"), p.stderr
    user("kill", cid, "KILL", root=False, check=True)
    user("delete", "-f", cid, root=False, check=True)
    assert not os.path.exists(os.path.join(user.run_dir, "rt", cid))


def test_rootless_limits_without_a_delegated_cgroup_fail_cleanly(user, busybox_rootfs):
    def limits(cfg):
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle = rootless_bundle(user, busybox_rootfs, ["true"], edit=limits)
    cid = "rll-" + uuid.uuid4().hex[:6]
    p = user("run", "--bundle", bundle, cid)
    assert p.returncode != 0
    assert "rootless: linux.resources needs a cgroup" in p.stderr, p.stderr
    assert user("state", cid).returncode != 0
    assert os.listdir(os.path.join(user.home, "state")) == []


def test_more_ids_than_ones_own_go_through_newuidmap(user, busybox_rootfs):
    """runc's rule: a user's single id maps directly; a range needs newuidmap and /etc/subuid."""
    subuid = None
    if os.path.exists("/etc/subuid"):
        with open("/etc/subuid") as f:
            subuid = next((line.strip().split(":") for line in f if line.startswith(USER.pw_name + ":")), None)

    def ranged(cfg):
        start = int(subuid[1]) if subuid else 100000
        for key in ("uidMappings", "gidMappings"):
            own = cfg["linux"][key][0]["hostID"]
            cfg["linux"][key] = [{"containerID": 0, "hostID": own, "size": 1},
                                 {"containerID": 1, "hostID": start, "size": 1000}]
    bundle = rootless_bundle(user, busybox_rootfs, ["sh", "-c", "cat /proc/self/uid_map"], edit=ranged)
    p = user("run", "--bundle", bundle, "rlm-" + uuid.uuid4().hex[:6])
    if subuid and shutil.which("newuidmap"):
        assert p.returncode == 0, p.stderr
        assert [line.split() for line in p.stdout.splitlines()] == \
            [["0", str(USER.pw_uid), "1"], ["1", subuid[1], "1000"]], p.stdout
    else:
        assert p.returncode != 0
        assert "newuidmap" in p.stderr and "/etc/subuid" in p.stderr, p.stderr


def test_rootless_systemd_driver_uses_the_user_s_delegated_cgroup(user, busybox_rootfs):
    """--systemd-cgroup for a plain user: a scope of the user's own systemd, whose delegated
    cgroup holds the limits (podman rootless runs so by default)."""
    bus = f"/run/user/{USER.pw_uid}/bus"
    if not (os.path.isdir("/run/systemd/system") and os.path.exists(bus)):
        pytest.skip(f"needs a systemd user instance for {USER.pw_name} (scripts/test-in-vm's guest has one)")
    cid = "rls-" + uuid.uuid4().hex[:6]

    def limits(cfg):
        cfg["linux"]["cgroupsPath"] = f"user.slice:rt-test:{cid}"
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 30}}
    bundle = rootless_bundle(user, busybox_rootfs, ["sleep", "1000"], edit=limits)
    env = [f"DBUS_SESSION_BUS_ADDRESS=unix:path={bus}"]
    user("--systemd-cgroup", "create", "--bundle", bundle, cid, env=env, check=True)
    try:
        pid = json.loads(user("state", cid, check=True).stdout)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            path = f.read().strip().removeprefix("0::")
        want = f"/user.slice/user-{USER.pw_uid}.slice/user@{USER.pw_uid}.service/user.slice/rt-test-{cid}.scope"
        assert path == want, path
        with open(f"/sys/fs/cgroup{path}/memory.max") as f:
            assert f.read().strip() == str(64 << 20)
        with open(f"/sys/fs/cgroup{path}/pids.max") as f:
            assert f.read().strip() == "30"
        user("update", "--memory", "128M", cid, env=env, check=True)
        with open(f"/sys/fs/cgroup{path}/memory.max") as f:
            assert f.read().strip() == str(128 << 20)
    finally:
        user("delete", "-f", cid, env=env)
    assert not os.path.exists(f"/sys/fs/cgroup{path}")


def test_rootless_podman_runs_rt(user, busybox_rootfs):
    """podman as a plain user with rt as its runtime: podman's user namespace comes from
    /etc/subuid (newuidmap), and rt runs as that namespace's root, rootless by detection, in
    the user's systemd scope where there is one."""
    podman = shutil.which("podman")
    ranges = os.path.exists("/etc/subuid") and any(line.startswith(USER.pw_name + ":") for line in open("/etc/subuid"))
    if not (podman and ranges and shutil.which("newuidmap")):
        why = f"needs podman, newuidmap and /etc/subuid ranges for {USER.pw_name} (the guest's rt user has them)"
        if os.environ.get("RT_IN_VM"):
            pytest.fail(why)
        pytest.skip(why)
    run_user = f"/run/user/{USER.pw_uid}"
    sd_user = os.path.isdir("/run/systemd/system") and os.path.exists(f"{run_user}/bus")
    xdg = run_user if sd_user else user.run_dir
    before = set(os.listdir(xdg))
    home = user.home
    from clients import podman_config
    podman_config(home, user.rt, "systemd" if sd_user else "cgroupfs")
    from clients import rootfs_tar
    rootfs_tar(busybox_rootfs, f"{home}/busybox.tar")
    for name in ("containers.conf", "storage.conf", "busybox.tar"):
        os.chown(f"{home}/{name}", USER.pw_uid, USER.pw_gid)
    env = [f"CONTAINERS_CONF={home}/containers.conf", f"CONTAINERS_STORAGE_CONF={home}/storage.conf",
           f"XDG_RUNTIME_DIR={xdg}", *([f"DBUS_SESSION_BUS_ADDRESS=unix:path={run_user}/bus"] if sd_user else [])]

    def pm(*args, check=False):
        return user.run([podman, "--runtime", "rt", *args], env=env, check=check, timeout=120)
    try:
        pm("import", f"{home}/busybox.tar", "localhost/busybox:rt", check=True)
        p = pm("run", "--rm", "localhost/busybox:rt", "sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/cgroup")
        assert p.returncode == 0, p.stderr
        out = p.stdout.splitlines()
        assert out[0] == "0", out
        # podman's user namespace: root is the user, the rest comes from its /etc/subuid range
        assert out[1].split() == ["0", str(USER.pw_uid), "1"] and out[2].split()[0] == "1", out
        assert pm("run", "--rm", "localhost/busybox:rt", "sh", "-c", "exit 7").returncode == 7
        cid = pm("run", "-d", "localhost/busybox:rt", "sleep", "1000", check=True).stdout.strip()
        p = pm("exec", cid, "sh", "-c", "echo in; cat /proc/1/cmdline")
        assert p.returncode == 0 and p.stdout.startswith("in\nsleep"), p.stderr
        if sd_user:
            pid = pm("inspect", "-f", "{{.State.Pid}}", cid, check=True).stdout.strip()
            with open(f"/proc/{pid}/cgroup") as f:
                assert f"user@{USER.pw_uid}.service/user.slice/libpod-{cid}.scope" in f.read()
        pm("rm", "-f", "-t", "0", cid, check=True)
    finally:
        pm("rm", "-af", "-t", "0")
        pm("system", "reset", "-f")
        for pidfile in (f"{home}/tmp/pause.pid", f"{xdg}/libpod/tmp/pause.pid"):
            try:  # podman's pause process, which holds its user namespace
                os.kill(int(open(pidfile).read()), 9)
            except (OSError, ValueError):
                pass
        for name in set(os.listdir(xdg)) - before:
            path = os.path.join(xdg, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)

