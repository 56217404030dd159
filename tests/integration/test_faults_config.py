"""Bad configs through a real `rt create`: each fails with one clear line that names the
setting and the cause, or makes a container that works; nothing is left behind."""
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from conftest import base_config, is_rt, runtime_path

# CI explores a fixed set (a green main stays green); elsewhere each run explores anew
CI = bool(os.environ.get("CI"))

pytestmark = pytest.mark.root

if not is_rt(runtime_path()):
    pytest.skip("rt-specific tests (RT_RUNTIME points elsewhere)", allow_module_level=True)


def _load_strategies():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "unit", "test_config_fuzz.py")
    spec = importlib.util.spec_from_file_location("rt_config_fuzz_strategies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_strategies()
ERROR_LINE = re.compile(r'^time="[^"]+" level=error msg=(".*")$')
CGROUP_FS = "/sys/fs/cgroup"


class Env:
    """A private rootfs copy, a state root, and a cgroup parent that only this module uses."""

    def __init__(self, base: str, rootfs: str):
        self.dir = tempfile.mkdtemp(prefix="rt-fuzz-")
        self.rootfs = os.path.join(self.dir, "rootfs")
        # a copy, since containers write into it; device nodes stay behind (reading /dev/zero never ends)
        shutil.copytree(rootfs, self.rootfs, symlinks=True, ignore=lambda d, names: [
            n for n in names if not os.path.islink(os.path.join(d, n))
            and not stat.S_ISDIR(os.lstat(os.path.join(d, n)).st_mode)
            and not stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode)])
        # what root.path and bind mounts may name: a directory, a file, nothing
        self.host = os.path.join(self.dir, "host")
        os.makedirs(os.path.join(self.host, "tmp", "d"))
        open(os.path.join(self.host, "tmp", "f"), "w").close()
        self.root = os.path.join(self.dir, "state")
        self.bundle = os.path.join(self.dir, "bundle")
        os.mkdir(self.bundle)
        self.cgroup = f"/{base}-{os.getpid()}"
        self.n = 0

    def rt(self, *args, timeout=60, env=None):
        with tempfile.TemporaryFile("w+") as err:  # the container inherits stderr: a file, not a pipe
            p = subprocess.run([runtime_path(), "--root", self.root, *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=timeout, text=True, env=env)
            err.seek(0)
            p.stderr = err.read()
        return p

    def cgroup_dirs(self) -> list[str]:
        return [os.path.join(CGROUP_FS, h, self.cgroup.lstrip("/")) for h in os.listdir(CGROUP_FS)]

    def remove_cgroups(self) -> list[str]:
        """rmdir our cgroup tree bottom-up; returns the directories that would not go."""
        stuck = []
        for top in self.cgroup_dirs():
            for d, subs, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    stuck.append(d)
        return stuck

    def close(self):
        for cid in os.listdir(self.root) if os.path.isdir(self.root) else []:
            self.rt("delete", "--force", cid)
        stuck = self.remove_cgroups()
        shutil.rmtree(self.dir)
        assert not stuck, f"cgroups left: {stuck}"


@pytest.fixture(scope="module")
def env(busybox_rootfs):
    e = Env("rt-test-fuzz", busybox_rootfs)
    yield e
    e.close()


def mounts(e: "Env") -> set[str]:
    """The host's mounts a container of ours could leave: on our files or on the cgroup tree
    (not all of them: other suites may mount and unmount on this machine meanwhile)."""
    with open("/proc/self/mountinfo") as f:
        fields = [line.split()[:5] for line in f]
    return {" ".join(m) for m in fields if m[4].startswith((e.dir, CGROUP_FS)) or m[3].startswith(e.dir)}


def leftover_processes(e: Env) -> list[str]:
    """Processes in our cgroups or in our directory."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cg = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            where = os.readlink(f"/proc/{pid}/root"), os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if e.cgroup + "/" in cg or any(w.startswith(e.dir) for w in where):
            out.append(f"{pid}: {cmd[:80]!r}")
    return out


def error_message(p, crash_ok=False) -> str:
    """The one error line of a failed verb, decoded; fails on anything else on stderr."""
    assert p.returncode == 1, f"exit {p.returncode}: {p.stderr[-2000:]}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr[-2000:]
    m = ERROR_LINE.match(lines[0])
    assert m, lines[0]
    msg = json.loads(m.group(1))
    if not crash_ok:
        fuzz.check_message(msg)
    return msg


def create(e: Env, cfg: dict, cid: str):
    with open(os.path.join(e.bundle, "config.json"), "wb") as f:
        f.write(fuzz.dumps(cfg))
    return e.rt("create", "--bundle", e.bundle, cid)


def assert_nothing_left(e: Env, cid: str, before: set[str], cgroups_path=None):
    assert not os.path.exists(os.path.join(e.root, cid)), "state dir left"
    assert mounts(e) - before == set(), "mounts left"
    assert leftover_processes(e) == [], "processes left"
    if isinstance(cgroups_path, str) and "\0" not in cgroups_path:  # the container's own cgroup
        from rt.core.cgroups import normalize_path
        leaf = normalize_path(cgroups_path, cid).lstrip("/")
        left = [d for d in (os.path.join(CGROUP_FS, h, leaf) for h in os.listdir(CGROUP_FS)) if os.path.isdir(d)]
        assert left == [], "container cgroup left"
    assert e.remove_cgroups() == [], "cgroups left"  # the parents rt made, as runc leaves them


def run_config(e: Env, cfg: dict, cid: str) -> str | None:
    """create (then start and delete); the error message, or None when it worked."""
    before = mounts(e)
    try:
        p = create(e, cfg, cid)
        if p.returncode == 0:
            s = e.rt("start", cid)
            if s.returncode != 0:
                error_message(s)
            d = e.rt("delete", "--force", cid)
            assert d.returncode == 0, d.stderr
            return None
        return error_message(p)
    finally:
        assert_nothing_left(e, cid, before, (cfg.get("linux") or {}).get("cgroupsPath"))


# --- the fuzzer ------------------------------------------------------------------------------------


@settings(derandomize=CI, max_examples=50, deadline=timedelta(seconds=90), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(muts=fuzz.mutations(max_parts=2, typed=0.8))
def test_fuzzed_configs_fail_cleanly_or_run(env, muts):
    env.n += 1
    cid = f"fz{env.n}"
    cfg = fuzz.mutated_config(env.rootfs, muts, cgroup_parent=f"{env.cgroup}/{cid}/leaf", host_base=env.host)
    run_config(env, cfg, cid)


# --- the errors of issue 13 --------------------------------------------------------------------------


def config(e: Env, cid: str, args=("true",), **linux) -> dict:
    cfg = base_config(e.rootfs, list(args))
    cfg["linux"]["cgroupsPath"] = f"{e.cgroup}/{cid}/leaf"
    cfg["linux"].update(linux)
    return cfg


def test_memory_limit_that_kills_the_init(env):
    msg = run_config(env, config(env, "oom", resources={"memory": {"limit": 4096}}), "oom")
    assert msg == "container init was OOM-killed (memory limit too low?): linux.resources.memory.limit is 4096"


def test_cgroup_value_the_kernel_refuses(env):
    cpus = f"{os.cpu_count() + 1000}"  # valid syntax, no such CPU
    msg = run_config(env, config(env, "cpus", resources={"cpu": {"cpus": cpus}}), "cpus")
    assert re.fullmatch(rf"linux\.resources\.cpu\.cpus: cannot write {cpus} to {CGROUP_FS}/\S+/cpuset\.cpus: "
                        rf"(Numerical result out of range|Invalid argument)", msg), msg


def test_pids_limit_that_stops_the_init(env):
    msg = run_config(env, config(env, "pids", resources={"pids": {"limit": 1}}), "pids")
    assert msg == ("container init could not start: the pids limit refused a new process: "
                   "linux.resources.pids.limit is 1")


def test_seccomp_filter_that_stops_the_init(env):
    cfg = config(env, "sc", seccomp={"defaultAction": "SCMP_ACT_KILL_PROCESS"})
    assert run_config(env, cfg, "sc") == ("container init exited before it was ready (stopped by its seccomp "
                                          "filter?): linux.seccomp.defaultAction is SCMP_ACT_KILL_PROCESS")


def test_cgroups_path_the_kernel_refuses(env):
    cfg = config(env, "cgp")
    cfg["linux"]["cgroupsPath"] += "/" + "c" * 5000
    msg = run_config(env, cfg, "cgp")
    assert re.fullmatch(r"config\.json: \$\.linux\.cgroupsPath: \d+ bytes long: too long for a cgroup below "
                        r"/sys/fs/cgroup/\w+ \(paths take at most 4095 bytes\)", msg), msg


def test_device_rule_for_any_number(env):
    """-1 is "any" in a device rule (runc's wildcard), not a number for the kernel to refuse."""
    rules = [{"allow": False, "type": "b", "major": -1, "minor": -1, "access": "rwm"}]
    assert run_config(env, config(env, "dev", resources={"devices": rules}), "dev") is None


def test_oom_score_adj_without_proc(env):
    """Set from the host, as runc does: it needs no /proc in the container."""
    cfg = config(env, "oa", ["sleep", "100"])
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/proc"]
    cfg["process"]["oomScoreAdj"] = 500
    before = mounts(env)
    try:
        assert create(env, cfg, "oa").returncode == 0
        state = subprocess.run([runtime_path(), "--root", env.root, "state", "oa"], check=True,
                               capture_output=True, text=True)
        pid = json.loads(state.stdout)["pid"]
        with open(f"/proc/{pid}/oom_score_adj") as f:
            assert f.read().strip() == "500"
    finally:
        assert env.rt("delete", "--force", "oa").returncode == 0
        assert_nothing_left(env, "oa", before, cfg["linux"]["cgroupsPath"])


def test_update_the_kernel_refuses(env):
    from rt.core.cgroups import Layout
    if Layout.detect().mode == "v2":
        pytest.skip("cgroup v2 takes a memory.max below the usage (and reclaims or OOM-kills)")
    before = mounts(env)
    cfg = config(env, "upd", ["sleep", "100"])
    try:
        assert create(env, cfg, "upd").returncode == 0
        msg = error_message(env.rt("update", "--memory", "4096", "upd"))
        assert re.fullmatch(r"linux\.resources\.memory\.limit: cannot write 4096 to \S+/memory\.limit_in_bytes: "
                            r"Device or resource busy", msg), msg
    finally:
        assert env.rt("delete", "--force", "upd").returncode == 0
        assert_nothing_left(env, "upd", before, cfg["linux"]["cgroupsPath"])


def test_root_path_that_is_a_file(env):
    f = os.path.join(env.dir, "file-rootfs")
    open(f, "w").close()
    try:
        cfg = config(env, "rf")
        cfg["root"]["path"] = f
        assert run_config(env, cfg, "rf") == f"invalid rootfs: {f}: not a directory"
        cfg["root"]["path"] = f + "-missing"
        assert run_config(env, cfg, "rf") == f"rootfs ({f}-missing) does not exist"
    finally:
        os.unlink(f)


def test_mount_label_without_selinux(env):
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled here: the label is applied")
    log = os.path.join(env.dir, "label.log")
    cfg = config(env, "ml", ["sh", "-c", "test -d /dev/shm"], mountLabel="system_u:object_r:container_file_t:s0")
    before = mounts(env)
    try:
        with open(os.path.join(env.bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        p = env.rt("--log", log, "run", "--bundle", env.bundle, "ml")
        assert (p.returncode, p.stderr) == (0, "")
        with open(log) as f:
            assert "linux.mountLabel is ignored: SELinux is not enabled on this host" in f.read()
    finally:
        env.rt("delete", "--force", "ml")
        os.unlink(log)
        assert_nothing_left(env, "ml", before)


PLUGIN = '''
from rt.core import api

@api.hookimpl
def rt_register(registry):
    registry.add_backend("faulty", "rt_faulty_plugin:Faulty", version="1")

class Faulty(api.OciBackend):
    name = "faulty"
    def create(self, req):
        return {}["boom"]
'''


def test_exception_in_a_plugin_names_it(env):
    site = os.path.join(env.dir, "site")
    os.makedirs(os.path.join(site, "rt_faulty_plugin-1.dist-info"))
    with open(os.path.join(site, "rt_faulty_plugin.py"), "w") as f:
        f.write(PLUGIN)
    with open(os.path.join(site, "rt_faulty_plugin-1.dist-info", "entry_points.txt"), "w") as f:
        f.write("[rt.plugins]\nfaulty = rt_faulty_plugin\n")
    before = mounts(env)
    try:
        cfg = config(env, "pl")
        with open(os.path.join(env.bundle, "config.json"), "w") as f:
            json.dump(dict(cfg, annotations={"rt.plugin": "faulty"}), f)
        p = env.rt("create", "--bundle", env.bundle, "pl", env=dict(os.environ, PYTHONPATH=site))
        assert error_message(p, crash_ok=True) == "plugin faulty: KeyError: 'boom'"
    finally:
        shutil.rmtree(site)
        assert_nothing_left(env, "pl", before)


def test_a_broken_plugin_is_named_and_the_other_kinds_keep_working(runtime, make_bundle, tmp_path, no_leaks):
    """A third-party plugin that fails to import: `rt features` names it (JSON and stderr), and
    containers of every other kind still run (on a node, one bad plugin is no outage)."""
    if not is_rt(runtime.path):
        pytest.skip("rt's plugins")
    site = tmp_path / "site"
    site.mkdir()
    (site / "rt_broken_plugin.py").write_text("import no_such_module_anywhere\n")
    (site / "rt_broken-1.0.dist-info").mkdir()
    (site / "rt_broken-1.0.dist-info" / "entry_points.txt").write_text("[rt.plugins]\nbroken = rt_broken_plugin\n")
    env = dict(os.environ, PYTHONPATH=str(site), RT_NO_CORE="1")
    p = runtime("features", env=env)
    assert p.returncode == 0, p.stderr
    feats = json.loads(p.stdout)
    assert "ModuleNotFoundError" in feats["rt"]["disabled"]["broken"]
    assert "broken" in feats["annotations"]["io.github.rt.plugins.disabled"]
    assert "rt: plugin broken is disabled: cannot load rt_broken_plugin" in p.stderr
    assert {"app_single", "lxc_system", "hypervisor_kvm"} <= set(feats["rt"]["plugins"][i]["name"]
                                                                 for i in range(len(feats["rt"]["plugins"])))
    p = runtime("run", "--bundle", make_bundle(["echo", "still-works"]), "afterbroken", env=env)
    assert (p.returncode, p.stdout) == (0, "still-works\n"), p.stderr
    p = runtime("--plugin", "broken", "run", "--bundle", make_bundle(["true"]), "tobroken", env=env)
    assert p.returncode != 0 and "plugin 'broken' is disabled: cannot load rt_broken_plugin" in p.stderr


def test_delete_force_of_a_container_whose_plugin_is_gone_removes_its_cgroup(runtime, make_bundle, no_leaks):
    """Its plugin uninstalled: `delete -f` still kills it, and removes its cgroup and state."""
    if not is_rt(runtime.path):
        pytest.skip("rt's records")
    runtime.create("orphan", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "orphan", check=True)
    path = os.path.join(runtime.root, "orphan", "state.json")
    with open(path) as f:
        record = json.load(f)
    cgroup = record["extra"]["cgroup"]
    record.update(backend="rt_gone_plugin.backend:Gone", plugin="gone")
    with open(path, "w") as f:
        json.dump(record, f)
    p = runtime("delete", "-f", "orphan")
    assert p.returncode == 0, p.stderr
    assert not [h for h in ["", *os.listdir("/sys/fs/cgroup")] if os.path.isdir(f"/sys/fs/cgroup/{h}{cgroup}")]
    assert runtime("state", "orphan").returncode != 0
