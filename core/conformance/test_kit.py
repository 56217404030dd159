"""The conformance checks (run them with `rt conformance PLUGIN`).

The first part holds for every kind and uses only the abstract actions of Backend.workload;
the checks marked `needs(...)` run for kinds that declare those capabilities.
"""
import json
import os
import time

import pytest

from rt.core.testing import ConsoleSocket, read_all

needs = pytest.mark.needs


# --- every kind ------------------------------------------------------------------------------
def test_create_start_kill_delete(kit):
    b = kit.bundle("sleep")
    pidfile = os.path.join(kit.work, "pid")
    kit.create("c1", b, "--pid-file", pidfile)
    st = kit.state("c1")
    assert st["status"] == "created"
    assert st["id"] == "c1" and st["bundle"] == b and st["ociVersion"]
    assert st["pid"] > 0 and int(open(pidfile).read()) == st["pid"]
    assert os.path.exists(f"/proc/{st['pid']}")
    kit.track("c1")
    kit("start", "c1", check=True)
    assert kit.state("c1")["status"] == "running"
    kit("kill", "c1", "KILL", check=True)
    assert kit.wait_status("c1", "stopped") == "stopped"  # noticed with no other call in between
    kit("delete", "c1", check=True)
    p = kit("state", "c1")
    assert p.returncode != 0 and "does not exist" in p.stderr


def test_run_gives_the_output_and_exit_code(kit):
    code, out, err = kit.run("c2", kit.bundle("print", "out", "err", 3))
    assert code == 3, err
    if "stdio" in kit.supports:
        assert out == "out\n" and "err" in err
    else:
        assert "out\n" in out and "err\n" in out
    assert kit("state", "c2").returncode != 0  # run deletes after exit


def test_exit_codes(kit):
    for code in (0, 1, 42):
        assert kit.run(f"x{code}", kit.bundle("exit", code))[0] == code


def test_run_detached(kit):
    p = kit("run", "-d", "--bundle", kit.bundle("sleep"), "c3", detach=True)
    assert p.returncode == 0, p.stderr
    kit.track("c3")
    assert kit.state("c3")["status"] == "running"
    kit("delete", "--force", "c3", check=True)
    assert kit("state", "c3").returncode != 0


def test_signal_forms(kit):
    b = kit.bundle("sleep")
    for i, sig in enumerate(["KILL", "SIGKILL", "9"]):
        cid = f"sig{i}"
        kit.create(cid, b)
        kit.track(cid)
        kit("start", cid, check=True)
        kit("kill", cid, sig, check=True)
        assert kit.wait_status(cid, "stopped") == "stopped"
        kit("delete", cid, check=True)


def test_wrong_status_errors(kit):
    kit.create("w", kit.bundle("sleep"))
    kit.track("w")
    kit("start", "w", check=True)
    assert kit("start", "w").returncode != 0  # already running
    assert kit("delete", "w").returncode != 0  # running, no --force
    assert kit.state("w")["status"] == "running"
    kit("kill", "w", "KILL", check=True)
    kit.wait_status("w", "stopped")
    assert kit("start", "w").returncode != 0
    assert kit("kill", "w", "KILL").returncode != 0
    kit("delete", "w", check=True)


def test_delete_created_container(kit):
    kit.create("dc", kit.bundle("sleep"))
    kit.track("dc")
    kit("delete", "dc", check=True)
    assert kit("state", "dc").returncode != 0


def test_list_and_a_process_that_exits(kit):
    kit.create("l1", kit.bundle("exit", 0))
    assert kit("list", "-q", check=True).stdout.split() == ["l1"]
    kit("start", "l1", check=True)
    assert kit.wait_status("l1", "stopped") == "stopped"
    kit("delete", "l1", check=True)
    assert kit("list", "-q", check=True).stdout.split() == []


def test_args_env_and_rootfs_files(kit):
    def env(c):
        c["process"]["env"].append("KIT_VALUE=forty two")
    assert kit.run("e1", kit.bundle("getenv", "KIT_VALUE", edit=env))[:2] == (0, "forty two\n")
    code, out, err = kit.run("e2", kit.bundle("cat", "/etc/kit.txt", files={"etc/kit.txt": "from the rootfs\n"}))
    assert (code, out) == (0, "from the rootfs\n"), err


def test_bind_mounts(kit):
    src = os.path.join(kit.work, "shared")
    os.makedirs(src)
    with open(os.path.join(src, "in.txt"), "w") as f:
        f.write("from the host\n")

    def bind(ro):
        def edit(c):
            c["mounts"].append({"destination": "/mnt/shared", "type": "bind", "source": src,
                                "options": ["rbind", "ro" if ro else "rw"]})
        return edit
    code, out, err = kit.run("m1", kit.bundle("cat", "/mnt/shared/in.txt", edit=bind(True)))
    assert (code, out) == (0, "from the host\n"), err
    code, out, err = kit.run("m2", kit.bundle("write", "/mnt/shared/out.txt", "written", edit=bind(False)))
    assert code == 0, err
    assert open(os.path.join(src, "out.txt")).read() == "written"
    code, _, _ = kit.run("m3", kit.bundle("write", "/mnt/shared/no.txt", "x", edit=bind(True)))
    assert code != 0 and not os.path.exists(os.path.join(src, "no.txt"))


def test_readonly_root(kit):
    def ro(c):
        c["root"]["readonly"] = True
    b = kit.bundle("write", "/kit-file", "x", edit=ro)
    assert kit.run("ro", b)[0] != 0
    assert not os.path.exists(os.path.join(b, "rootfs", "kit-file"))


def test_bad_bundles_leave_nothing(kit):
    assert kit.create("b1", os.path.join(kit.work, "missing"), check=False).returncode != 0
    empty = os.path.join(kit.work, "empty")
    os.makedirs(empty)
    assert kit.create("b2", empty, check=False).returncode != 0
    bad = os.path.join(kit.work, "bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "config.json"), "w") as f:
        f.write("{not json")
    assert kit.create("b3", bad, check=False).returncode != 0

    def unknown_field_type(c):
        c["process"]["args"] = "not a list"
    assert kit.create("b4", kit.bundle("sleep", edit=unknown_field_type), check=False).returncode != 0
    assert kit("list", "-q").stdout.split() == []


def test_state_of_unknown_container(kit):
    p = kit("state", "nothere")
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert kit("kill", "nothere", "KILL").returncode != 0
    assert kit("delete", "nothere").returncode != 0
    assert kit("delete", "--force", "nothere").returncode == 0  # runc: --force of nothing is no error


# --- what a kind declares ---------------------------------------------------------------------
@needs("posix")
def test_process_settings_inside(kit):
    """Hostname, rlimits, user and cwd as the process sees them."""
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["cwd"] = "/tmp"
    code, out, err = kit.run("v", kit.bundle(["sh", "-c", "hostname; ulimit -n; id -u; id -g; pwd"], edit=edit))
    assert code == 0, err
    assert out.split() == ["kit", "1024", "1000", "1000", "/tmp"]


@needs("posix", "namespaces")
def test_namespaces_and_masked_paths(kit):
    """PID 1 of its own pid namespace, only lo in its network namespace, maskedPaths and readonlyPaths."""
    script = ("echo pid=$$; ls /sys/class/net; [ -c /proc/keys ] && echo masked; ls /sys/firmware | wc -l; "
              "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null || echo ro")
    code, out, err = kit.run("ns", kit.bundle(["sh", "-c", script]))
    assert code == 0, err
    assert out.split() == ["pid=1", "lo", "masked", "0", "ro"]


@needs("posix")
def test_default_signal_is_term(kit):
    kit.create("t", kit.bundle(["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]))
    kit.track("t")
    kit("start", "t", check=True)
    time.sleep(0.3)
    kit("kill", "t", check=True)
    assert kit.wait_status("t", "stopped") == "stopped"
    kit("delete", "t", check=True)


@needs("exec")
def test_exec(kit):
    b = kit.bundle("sleep")
    kit.create("e", b)
    kit.track("e")
    kit("start", "e", check=True)
    p = kit("exec", "e", *kit.workload(os.path.join(b, "rootfs"), "print", "hi", "there", 5))
    assert p.returncode == 5 and p.stdout == "hi\n" and "there" in p.stderr
    assert kit("exec", "e", "/no/such/program").returncode != 0
    kit("delete", "--force", "e", check=True)


@needs("ps")
def test_ps(kit):
    kit.create("ps", kit.bundle("sleep"))
    kit.track("ps")
    kit("start", "ps", check=True)
    pids = json.loads(kit("ps", "--format", "json", "ps", check=True).stdout)
    assert pids and all(isinstance(p, int) for p in pids)
    kit("delete", "--force", "ps", check=True)


@needs("kill-all")
def test_kill_all(kit):
    kit.create("ka", kit.bundle("sleep"))
    kit.track("ka")
    kit("start", "ka", check=True)
    kit("kill", "--all", "ka", "KILL", check=True)
    assert kit.wait_status("ka", "stopped") == "stopped"
    kit("delete", "ka", check=True)


@needs("pause")
def test_pause_resume(kit):
    kit.create("p", kit.bundle("sleep"))
    kit.track("p")
    kit("start", "p", check=True)
    kit("pause", "p", check=True)
    assert kit.state("p")["status"] == "paused"
    assert kit("pause", "p").returncode != 0  # already paused
    kit("resume", "p", check=True)
    assert kit.state("p")["status"] == "running"
    assert kit("resume", "p").returncode != 0
    kit("pause", "p", check=True)
    kit("delete", "--force", "p", check=True)  # a paused container can be deleted by force


@needs("update")
def test_update(kit):
    kit.create("u", kit.bundle("sleep"))
    kit.track("u")
    kit("start", "u", check=True)
    p = kit("update", "--pids-limit", "200", "--memory", "268435456", "u")
    assert p.returncode == 0, p.stderr
    assert kit("update", "--memory", "not-a-size", "u").returncode != 0
    kit("delete", "--force", "u", check=True)
    assert kit("update", "--pids-limit", "10", "u").returncode != 0  # gone


@needs("terminal")
def test_terminal_through_console_socket(kit):
    def edit(c):
        c["process"]["terminal"] = True
    cs = ConsoleSocket(os.path.join(kit.work, "console.sock"))
    try:
        kit.create("tty", kit.bundle("print", "on the terminal", "and its stderr", 0, edit=edit),
                   "--console-socket", cs.path)
        kit.track("tty")
        master = cs.receive_master()
        kit("start", "tty", check=True)
        out = read_all(master).decode().replace("\r", "")
        os.close(master)
        assert "on the terminal\n" in out and "and its stderr\n" in out, out
    finally:
        cs.close()
    kit.wait_status("tty", "stopped")
    kit("delete", "tty", check=True)


@needs("terminal", "stdio")
def test_terminal_without_console_socket_is_refused(kit):
    def edit(c):
        c["process"]["terminal"] = True
    p = kit.create("nocs", kit.bundle("exit", 0, edit=edit), check=False)
    assert p.returncode != 0 and "console" in p.stderr
    assert kit("list", "-q").stdout.split() == []


def _hook(kit, body: str) -> str:
    path = os.path.join(kit.work, f"hook-{len(os.listdir(kit.work))}.sh")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{body}\n")
    os.chmod(path, 0o755)
    return path


@needs("hooks")
def test_hooks_run_in_order_with_state(kit):
    out = os.path.join(kit.work, "hooks")
    os.makedirs(out)
    hook = _hook(kit, 'cat > "$OUT/$1.json"; echo "$1" >> "$OUT/order"')

    def edit(c):
        c["hooks"] = {stage: [{"path": hook, "args": [hook, stage], "env": [f"OUT={out}"]}]
                      for stage in ("prestart", "createRuntime", "poststart", "poststop")}
    kit.create("hk", kit.bundle("sleep", edit=edit))
    pid = kit.track("hk")

    def order():
        return open(os.path.join(out, "order")).read().split()
    assert order()[:2] == ["prestart", "createRuntime"]
    st = json.load(open(os.path.join(out, "createRuntime.json")))
    assert st["id"] == "hk" and st["pid"] == pid and st["status"] == "creating"
    kit("start", "hk", check=True)
    assert order()[-1] == "poststart"
    kit("kill", "hk", "KILL", check=True)
    kit.wait_status("hk", "stopped")
    kit("delete", "hk", check=True)
    assert order()[-2:] == ["poststart", "poststop"]


@needs("hooks")
def test_failing_create_hook_fails_create_and_leaves_nothing(kit):
    bad = _hook(kit, "exit 7")

    def edit(c):
        c["hooks"] = {"createRuntime": [{"path": bad}]}
    assert kit.create("hf", kit.bundle("sleep", edit=edit), check=False).returncode != 0
    assert kit("list", "-q").stdout.split() == []


@needs("userns")
def test_user_namespace(kit):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    code, out, err = kit.run("un", kit.bundle("cat", "/proc/self/uid_map", edit=edit))
    assert code == 0, err
    assert out.split() == ["0", "100000", "65536"]
