"""Black-box lifecycle checks. They take the runtime from $RT_RUNTIME (default: rt), so
`RT_RUNTIME=runc pytest tests/integration/test_lifecycle.py` proves the checks on runc.

The basic lifecycle (create/start/kill/delete, run's output and exit code, signals, wrong
status, pause, a failing hook) lives in the conformance kit (core/conformance/test_kit.py),
which tests/integration/test_conformance.py runs against every kind and against runc."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import is_rt
from rt.core.testing import ConsoleSocket, read_all

pytestmark = [pytest.mark.root, pytest.mark.blackbox]


def wait_status(rt, cid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = rt.state(cid)["status"]
        if s == want:
            return s
        time.sleep(0.02)
    return rt.state(cid)["status"]


ORPHAN = ("o=$( (sleep 30 >/dev/null 2>&1 & echo $!) ); sleep 0.3; "
          "echo init=$(awk '/^PPid/{print $2}' /proc/$$/status) orphan=$(awk '/^PPid/{print $2}' /proc/$o/status); "
          "kill $o")


@pytest.mark.parametrize("flag", [[], ["--no-subreaper"]])
def test_run_subreaper_adopts_the_container_s_orphans(runtime, make_bundle, no_leaks, flag):
    """No pid namespace: an orphan of the container is reparented to `run` (the init's parent),
    unless --no-subreaper; the init is the runtime's child either way."""
    def shared_pids(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    p = runtime("run", *flag, "--bundle", make_bundle(["sh", "-c", ORPHAN], edit=shared_pids), "orphans")
    assert p.returncode == 0, p.stderr
    got = dict(kv.split("=") for kv in p.stdout.split())
    assert (got["orphan"] == got["init"]) == (not flag), got


def test_container_processes_lead_their_own_session(runtime, make_bundle, no_leaks):
    """runc's init and exec'd processes call setsid(): the session is theirs, in their pid
    namespace (the caller's terminal session is out of reach, and CRIU can dump the init)."""
    sid = "cut -d' ' -f6 /proc/$$/stat"
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", f"echo $$ $({sid})"]), "sess")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "1"], p.stdout
    runtime.create("sess2", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "sess2", check=True)
    p = runtime("exec", "sess2", "sh", "-c", f"echo $$ $({sid})")
    assert p.returncode == 0 and len(set(p.stdout.split())) == 1, p.stdout  # its own session, led by itself
    runtime("delete", "-f", "sess2", check=True)


def test_default_signal_is_term(runtime, make_bundle, no_leaks):
    b = make_bundle(["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    runtime.create("t", b, check=True)
    runtime("start", "t", check=True)
    time.sleep(0.2)
    runtime("kill", "t", check=True)
    assert wait_status(runtime, "t", "stopped") == "stopped"
    runtime("delete", "t", check=True)


def test_ids(runtime, make_bundle, no_leaks):
    b = make_bundle(["sleep", "100"])
    runtime.create("dup", b, check=True)
    p = runtime.create("dup", b)
    assert p.returncode != 0 and "exist" in p.stderr
    p = runtime("state", "nope")
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert runtime("kill", "nope", "KILL").returncode != 0
    assert runtime("delete", "nope").returncode != 0
    assert runtime("delete", "--force", "nope").returncode == 0  # containerd relies on this
    runtime("delete", "--force", "dup", check=True)
    assert runtime("delete", "--force", "dup").returncode == 0


def test_list(runtime, make_bundle, no_leaks):
    b = make_bundle(["sleep", "100"])
    runtime.create("l1", b, check=True)
    assert runtime("list", "-q", check=True).stdout.split() == ["l1"]
    rows = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in rows] == [("l1", "created")]
    assert "l1" in runtime("list", check=True).stdout
    runtime("delete", "--force", "l1", check=True)


def test_ps_and_exec(runtime, make_bundle, no_leaks):
    b = make_bundle(["sleep", "100"])
    runtime.create("e", b, check=True)
    runtime("start", "e", check=True)
    pid = runtime.state("e")["pid"]
    assert pid in json.loads(runtime("ps", "--format", "json", "e", check=True).stdout)
    p = runtime("exec", "e", "sh", "-c", "echo hi; hostname; exit 5")
    assert p.returncode == 5 and p.stdout == "hi\nrt-test\n"
    p = runtime("exec", "e", "cat", "/proc/1/cmdline")
    assert p.stdout.split("\0")[0] == "sleep"
    runtime("delete", "--force", "e", check=True)


def test_exec_process_file(runtime, make_bundle, tmp_path, no_leaks):
    b = make_bundle(["sleep", "100"])
    runtime.create("ep", b, check=True)
    runtime("start", "ep", check=True)
    proc = {"terminal": False, "user": {"uid": 65534, "gid": 65534}, "args": ["sh", "-c", "id -u; pwd"],
            "env": ["PATH=/bin"], "cwd": "/tmp"}
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    p = runtime("exec", "--process", str(f), "ep")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["65534", "/tmp"]
    runtime("delete", "--force", "ep", check=True)


def test_json_log(runtime, tmp_path):
    log = tmp_path / "log.json"
    p = subprocess.run([runtime.path, "--root", runtime.root, "--log", str(log), "--log-format", "json",
                        "state", "missing"], capture_output=True, text=True)
    assert p.returncode != 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert any(x["level"] == "error" and "does not exist" in x["msg"] and "time" in x for x in lines)


def test_bad_bundles(runtime, tmp_path, make_bundle, no_leaks):
    assert runtime.create("b1", str(tmp_path / "missing")).returncode != 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runtime.create("b2", str(empty)).returncode != 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert runtime.create("b3", str(bad)).returncode != 0
    p = runtime.create("b4", make_bundle(["no-such-binary"]))
    assert p.returncode != 0 and "executable file not found" in p.stderr
    assert runtime("list", "-q").stdout.split() == []


def test_container_view(runtime, make_bundle, no_leaks):
    """Namespaces, hostname, rlimits, readonly root, masked paths, user and cwd seen from inside."""
    script = ("echo pid=$$; hostname; ulimit -n; touch /x 2>/dev/null && echo rw || echo ro; "
              "cat /proc/kcore | wc -c; ls /sys/class/net; id -u; pwd")

    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["cwd"] = "/tmp"
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "v")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["pid=1", "rt-test", "1024", "ro", "0", "lo", "1000", "/tmp"]


def test_pid_file_contract(runtime, make_bundle, tmp_path, no_leaks):
    """After create returns, the caller's subreaper reaps the init and reads its exit code."""
    b = make_bundle(["sh", "-c", "exit 7"])
    helper = f"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as conmon does
rt = [{runtime.path!r}, "--root", {runtime.root!r}]
subprocess.run(rt + ["create", "--bundle", {b!r}, "--pid-file", {str(tmp_path / "pid")!r}, "pc"],
               check=True, stdout=subprocess.DEVNULL)
pid = int(open({str(tmp_path / "pid")!r}).read())
subprocess.run(rt + ["start", "pc"], check=True)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    p = subprocess.run([sys.executable, "-c", helper], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "7"
    assert runtime.state("pc")["status"] == "stopped"
    runtime("delete", "pc", check=True)


def test_seccomp_filter(runtime, make_bundle, no_leaks):
    """An errno rule, an argument-conditioned rule and the default action, seen from inside."""
    def edit(c):
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                # fchmodat(AT_FDCWD, path, 0777): only mode 0777 is refused
                {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            ]}
    script = ("mkdir /tmp/d 2>&1; echo mkdir=$?; touch /tmp/f; chmod 700 /tmp/f; echo chmod700=$?; "
              "chmod 777 /tmp/f 2>/dev/null; echo chmod777=$?")
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "sc")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "Permission denied" in lines[0] and lines[1:] == ["mkdir=1", "chmod700=0", "chmod777=1"]


def test_exec_gets_the_container_seccomp_filter(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    runtime.create("sx", make_bundle(["sleep", "100"], edit=edit), check=True)
    runtime("start", "sx", check=True)
    p = runtime("exec", "sx", "mkdir", "/tmp/nope")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr
    runtime("delete", "--force", "sx", check=True)


def test_terminal_through_console_socket(runtime, make_bundle, tmp_path, no_leaks):
    def edit(c):
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 101}
    b = make_bundle(["sh", "-c", "tty; stty size; echo done; [ -c /dev/console ] && echo console"], edit=edit)
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        assert runtime.create("tty", b, "--console-socket", cs.path).returncode == 0
        master = cs.receive_master()
        runtime("start", "tty", check=True)
        out = read_all(master).decode().replace("\r", "").split("\n")
        os.close(master)
        assert out[0].startswith("/dev/pts/") and out[1] == "33 101" and out[2] == "done" and out[3] == "console"
    finally:
        cs.close()
    wait_status(runtime, "tty", "stopped")
    runtime("delete", "tty", check=True)


def test_exec_tty(runtime, make_bundle, tmp_path, no_leaks):
    runtime.create("et", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "et", check=True)
    cs = ConsoleSocket(tmp_path / "exec.sock")
    try:
        p = runtime("exec", "--tty", "--detach", "--console-socket", cs.path, "et", "sh", "-c", "tty; echo ok",
                    stdout=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        master = cs.receive_master()
        out = read_all(master).decode().replace("\r", "").split("\n")
        os.close(master)
        assert out[0].startswith("/dev/pts/") and out[1] == "ok"
    finally:
        cs.close()
    runtime("delete", "--force", "et", check=True)


def _hook(tmp_path, name, body="cat > \"$OUT\""):
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_hooks_run_in_order_with_state(runtime, make_bundle, tmp_path, no_leaks):
    """Runtime-namespace hooks (prestart, createRuntime, poststart, poststop) get the state on stdin."""
    out = tmp_path / "hooks"
    out.mkdir()
    hook = _hook(tmp_path, "rec", 'cat > "$OUT/$1.json"; echo "$1" >> "$OUT/order"')

    def edit(c):
        c["hooks"] = {stage: [{"path": hook, "args": [hook, stage], "env": [f"OUT={out}"]}]
                      for stage in ("prestart", "createRuntime", "poststart", "poststop")}
    runtime.create("hk", make_bundle(["sleep", "100"], edit=edit), check=True)
    pid = runtime.state("hk")["pid"]
    order = (out / "order").read_text().split()
    if is_rt(runtime.path):
        assert order == ["prestart", "createRuntime"]
    else:  # runc < 1.2 runs poststart hooks already at create (fixed upstream in 1.2)
        assert order[:2] == ["prestart", "createRuntime"]
    st = json.loads((out / "createRuntime.json").read_text())
    assert st["id"] == "hk" and st["pid"] == pid and st["status"] == "creating"
    runtime("start", "hk", check=True)
    assert (out / "order").read_text().split()[-1] == "poststart"
    runtime("kill", "hk", "KILL", check=True)
    wait_status(runtime, "hk", "stopped")
    runtime("delete", "hk", check=True)
    assert (out / "order").read_text().split()[-2:] == ["poststart", "poststop"]
    assert json.loads((out / "poststop.json").read_text())["id"] == "hk"


def test_container_hooks_run_inside(runtime, make_bundle, tmp_path, no_leaks):
    """createContainer runs in the container's namespaces; startContainer after start, before the process."""
    def edit(c):
        c["mounts"].append({"destination": "/hooklog", "type": "bind", "source": str(tmp_path), "options": ["rbind"]})
        c["hooks"] = {
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"readlink /proc/self/ns/mnt > {tmp_path}/cc"]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /hooklog/sc.json"]}],
        }
    runtime.create("hc", make_bundle(["sh", "-c", "cat /hooklog/sc.json > /hooklog/seen"], edit=edit), check=True)
    # the container's mount namespace, not ours
    assert (tmp_path / "cc").read_text().strip() == os.readlink(f"/proc/{runtime.state('hc')['pid']}/ns/mnt")
    assert (tmp_path / "cc").read_text().strip() != os.readlink("/proc/self/ns/mnt")
    runtime("start", "hc", check=True)
    wait_status(runtime, "hc", "stopped")
    assert json.loads((tmp_path / "seen").read_text())["id"] == "hc"
    runtime("delete", "hc", check=True)


def test_hook_timeout(runtime, make_bundle, tmp_path, no_leaks):
    slow = _hook(tmp_path, "slow", "sleep 5")

    def edit(c):
        c["hooks"] = {"prestart": [{"path": slow, "timeout": 1}]}
    t = time.monotonic()
    p = runtime.create("ht", make_bundle(["sleep", "100"], edit=edit))
    assert p.returncode != 0 and "timed out" in p.stderr or "timeout" in p.stderr
    if is_rt(runtime.path):  # the spec says abort: rt kills the hook (runc 1.1 waits for it)
        assert time.monotonic() - t < 4
    assert runtime("list", "-q").stdout.split() == []


def test_run_foreground_terminal(runtime, make_bundle, tmp_path, no_leaks):
    """`run` with process.terminal and no --console-socket relays the pty itself."""
    def edit(c):
        c["process"]["terminal"] = True
    b = make_bundle(["sh", "-c", "tty; read line; echo got:$line; exit 4"], edit=edit)
    log = tmp_path / "typescript"
    cmd = f"{runtime.path} --root {runtime.root} run --bundle {b} ft; echo rc=$?"
    p = subprocess.run(["script", "-qec", cmd, str(log)], input="hello\n", capture_output=True, text=True,
                       timeout=60)
    out = log.read_text().replace("\r", "")
    assert "/dev/pts/0" in out and "got:hello" in out and "rc=4" in out, out + p.stderr


def test_user_namespace(runtime, make_bundle, tmp_path, no_leaks):
    """Container root is host uid 100000: files of host root show as the overflow id."""
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    script = "id -u; cat /proc/self/uid_map; stat -c %u /bin; touch /tmp/f && stat -c %u /tmp/f; hostname"
    runtime.create("un", make_bundle(["sh", "-c", script + "; sleep 100"], edit=edit), check=True)
    pid = runtime.state("un")["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == 100000  # seen from the host
    runtime("kill", "un", "KILL", check=True)
    wait_status(runtime, "un", "stopped")
    runtime("delete", "un", check=True)
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "un2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "0", "100000", "65536", "65534", "0", "rt-test"]


def test_process_settings_inside(runtime, make_bundle, no_leaks):
    """oomScoreAdj, umask, additional gids, sysctl and rlimits as the process sees them."""
    def edit(c):
        c["process"]["oomScoreAdj"] = 123
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [5, 7]}
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    script = ("cat /proc/self/oom_score_adj; umask; id -G; ulimit -n; ulimit -Hn; "
              "cat /proc/sys/net/ipv4/ip_forward")
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "ps1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["123", "0027", "1000", "5", "7", "256", "512", "1"]


def test_exec_overrides_and_kill_all(runtime, make_bundle, no_leaks):
    runtime.create("ka", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "ka", check=True)
    p = runtime("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000", "ka", "sh", "-c",
                "echo $FOO; pwd; id -u; id -g")
    assert p.stdout.split() == ["bar", "/tmp", "1000", "1000"], p.stderr
    runtime("exec", "-d", "ka", "sleep", "100", stdout=subprocess.DEVNULL, check=True)
    assert len(json.loads(runtime("ps", "--format", "json", "ka", check=True).stdout)) == 2
    runtime("kill", "--all", "ka", "KILL", check=True)
    assert wait_status(runtime, "ka", "stopped") == "stopped"
    runtime("delete", "ka", check=True)


def test_bad_verb_input(runtime, make_bundle, tmp_path, no_leaks):
    runtime.create("bv", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "bv", check=True)
    assert runtime("kill", "bv", "SIGNOPE").returncode != 0
    assert runtime.state("bv")["status"] == "running"
    bad = tmp_path / "process.json"
    bad.write_text('{"args": "not-a-list"}')
    assert runtime("exec", "--process", str(bad), "bv").returncode != 0
    assert runtime("exec", "--process", str(tmp_path / "missing.json"), "bv").returncode != 0
    p = runtime("exec", "bv", "no-such-binary")
    assert p.returncode != 0 and "executable file not found" in p.stderr
    assert runtime("exec", "--console-socket", str(tmp_path / "nosock"), "--tty", "bv", "true").returncode != 0
    runtime("kill", "bv", "KILL", check=True)
    wait_status(runtime, "bv", "stopped")
    res = tmp_path / "res.json"
    res.write_text('{"pids": {"limit": 10}}')
    assert runtime("update", "--resources", str(res), "bv").returncode != 0
    runtime("delete", "bv", check=True)


def test_recursive_readonly_mount(runtime, make_bundle, tmp_path, no_leaks):
    inner = tmp_path / "inner"
    inner.mkdir()

    def edit(c):
        c["mounts"].append({"destination": "/rro", "type": "bind", "source": str(tmp_path), "options": ["rbind", "rro"]})
    script = "touch /rro/x 2>/dev/null && echo writable || echo ro; touch /rro/inner/x 2>/dev/null && echo writable || echo ro"
    p = runtime("run", "--bundle", make_bundle(["sh", "-c", script], edit=edit), "rro")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ro", "ro"]
    assert not (inner / "x").exists()


def test_host_wide_sysctl_is_refused(runtime, make_bundle, no_leaks):
    def edit(c):
        c["linux"]["sysctl"] = {"kernel.core_pattern": "|/tmp/evil"}
    before = open("/proc/sys/kernel/core_pattern").read()
    p = runtime.create("sysx", make_bundle(["true"], edit=edit))
    assert p.returncode != 0
    assert open("/proc/sys/kernel/core_pattern").read() == before
    assert runtime("list", "-q").stdout.split() == []


def test_exec_foreground_terminal(runtime, make_bundle, tmp_path, no_leaks):
    runtime.create("eft", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "eft", check=True)
    log = tmp_path / "typescript"
    cmd = f"{runtime.path} --root {runtime.root} exec -t eft sh -c 'tty; read l; echo got:$l; exit 3'; echo rc=$?"
    subprocess.run(["script", "-qec", cmd, str(log)], input="hey\n", capture_output=True, text=True, timeout=60)
    out = log.read_text().replace("\r", "")
    assert "/dev/pts/" in out and "got:hey" in out and "rc=3" in out, out
    runtime("delete", "--force", "eft", check=True)


def test_exec_caps_and_gids(runtime, make_bundle, no_leaks):
    runtime.create("ecg", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "ecg", check=True)
    p = runtime("exec", "--cap", "CAP_SYS_PTRACE", "--additional-gids", "42", "ecg", "sh", "-c",
                "grep CapEff /proc/self/status; id -G")
    assert p.returncode == 0, p.stderr
    eff = int(p.stdout.split()[1], 16)
    assert eff & (1 << 19) and "42" in p.stdout.split()[2:]
    runtime("delete", "--force", "ecg", check=True)


def test_workload_signals_start_at_default(runtime, make_bundle, no_leaks):
    """No signal ignored or blocked in the workload: an ignored one survives execve, and
    the runtime's own (Python ignores SIGPIPE and SIGXFSZ) must not leak into it."""
    want = ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]
    b = make_bundle(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    p = runtime("run", "--bundle", b, "sig1")
    assert p.stdout.split("\n")[:2] == want, p.stdout + p.stderr
    runtime("run", "-d", "--bundle", make_bundle(["sleep", "100"]), "sig2", stdout=subprocess.DEVNULL, check=True)
    p = runtime("exec", "sig2", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")
    assert p.stdout.split("\n")[:2] == want, p.stdout + p.stderr
    runtime("delete", "--force", "sig2", check=True)


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here: the flag is valid")
def test_systemd_cgroup_flag_without_systemd(runtime, make_bundle):
    """runc: `--systemd-cgroup` on a host without systemd fails the create, leaving nothing."""
    p = runtime("--systemd-cgroup", "run", "--bundle", make_bundle(["true"]), "sdc")
    assert p.returncode == 1
    assert "systemd not running on this host, cannot use systemd cgroups manager" in p.stderr
    assert runtime("list", "-q").stdout == ""
