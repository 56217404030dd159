"""rt-wasm through the real rt CLI: WASI modules as containers."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import TAG, cgroup_dirs, wat

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces and cgroups)")

HELLO = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello, stdout\\n")
  (data (i32.const 96) "hello, stderr\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 14))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 96)) (i32.store (i32.const 4) (i32.const 14))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))"""

# every argument on a line of its own, argv[0] first
ECHO = """(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 12) "\\n")
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $end (loop $next
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $n))
  (func (export "_start") (local $i i32) (local $p i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 1024) (i32.const 8192)))
    (block $end (loop $next
      (br_if $end (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
      (local.set $p (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
      (i32.store (i32.const 16) (local.get $p)) (i32.store (i32.const 20) (call $strlen (local.get $p)))
      (i32.store (i32.const 24) (i32.const 12)) (i32.store (i32.const 28) (i32.const 1))
      ;; one iovec a call: wasmtime writes only the first non-empty one of a call
      (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))
      (drop (call $write (i32.const 1) (i32.const 24) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))))"""

TRAP = '(module (memory (export "memory") 1) (func (export "_start") unreachable))'

# touches 128 MiB of linear memory, then exits 0
GREEDY = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (if (i32.eq (memory.grow (i32.const 2047)) (i32.const -1)) (then (call $exit (i32.const 3))))
    (loop $touch
      (i32.store8 (local.get $i) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 4096)))
      (br_if $touch (i32.lt_u (local.get $i) (i32.const 134217728))))
    (call $exit (i32.const 0))))"""


@pytest.fixture(scope="module")
def mods(site):
    from rt_wasm.conformance import module_bytes
    return {"hello": wat(HELLO), "echo": wat(ECHO), "trap": wat(TRAP), "greedy": wat(GREEDY),
            "conformance": module_bytes()}


def C(*args):  # the conformance module's process.args
    return ["/conformance.wasm", *args]


# --- selection and the basics ------------------------------------------------------------------
def test_hello_by_annotation(rt, bundle, mods):
    b = bundle(["/hello.wasm"], files={"hello.wasm": mods["hello"]})
    p = rt("run", "--bundle", b, "hello")
    assert (p.returncode, p.stdout, p.stderr) == (7, "hello, stdout\n", "hello, stderr\n")


def test_selected_by_a_wasm_program_without_annotation(rt, bundle, mods):
    b = bundle(["/hello.wasm"], files={"hello.wasm": mods["hello"]}, wasm_annotation=False)
    p = rt("run", "--bundle", b, "claimed")
    assert (p.returncode, p.stdout) == (7, "hello, stdout\n"), p.stderr
    # the claim is only for .wasm programs: this one goes to the default kind, which execs it
    b = bundle(["/hello.wsm"], files={"hello.wsm": mods["hello"]}, wasm_annotation=False)
    p = rt("run", "--bundle", b, "notclaimed")
    assert p.returncode != 0 and "hello, stdout" not in p.stdout


def test_args_env_and_cwd(rt, bundle, mods):
    def edit(c):
        c["process"]["cwd"] = "/srv/app"
        c["process"]["env"] += ["GREETING=hi there", "EMPTY="]
    files = {"bin/echo.wasm": mods["echo"], "conformance.wasm": mods["conformance"],
             "srv/app/data.txt": "relative to the cwd\n"}
    p = rt("run", "--bundle", bundle(["/bin/echo.wasm", "a b", "", "-c"], files=files, edit=edit), "a1")
    assert (p.returncode, p.stdout) == (0, "/bin/echo.wasm\na b\n\n-c\n"), p.stderr
    # a bare name is looked up in the spec's PATH; argv[0] stays as given
    p = rt("run", "--bundle", bundle(["echo.wasm", "x"], files=files, edit=edit), "a2")
    assert (p.returncode, p.stdout) == (0, "echo.wasm\nx\n"), p.stderr
    p = rt("run", "--bundle", bundle(C("getenv", "GREETING"), files=files, edit=edit), "a3")
    assert p.stdout == "hi there\n", p.stderr
    p = rt("run", "--bundle", bundle(C("getenv", "PWD"), files=files, edit=edit), "a4")
    assert p.stdout == "/srv/app\n", p.stderr
    p = rt("run", "--bundle", bundle(C("getenv", "HOME"), files=files, edit=edit), "a5")
    assert p.stdout == "/root\n", p.stderr  # as runc, HOME is added when the spec has none
    p = rt("run", "--bundle", bundle(C("cat", "data.txt"), files=files, edit=edit), "a6")
    assert (p.returncode, p.stdout) == (0, "relative to the cwd\n"), p.stderr
    p = rt("run", "--bundle", bundle(C("cat", "/srv/app/data.txt"), files=files, edit=edit), "a7")
    assert (p.returncode, p.stdout) == (0, "relative to the cwd\n"), p.stderr
    # the module's environment is the spec's, none of the host's or rt's
    p = rt("run", "--bundle", bundle(C("getenv", "PYTHONPATH"), files=files), "a8")
    assert p.stdout == "\n", p.stderr


def test_exit_codes_traps_and_bad_modules(rt, bundle, mods):
    files = {"conformance.wasm": mods["conformance"], "trap.wasm": mods["trap"], "text.wasm": "not wasm\n",
             "component.wasm": b"\0asm\x0d\x00\x01\x00", "dir.wasm/x": ""}
    for code in (0, 1, 42, 125):
        assert rt("run", "--bundle", bundle(C("exit", str(code)), files=files), f"x{code}").returncode == code
    # wasmtime keeps 126 and up for itself: proc_exit(126) is a trap (as under the wasmtime CLI)
    p = rt("run", "--bundle", bundle(C("exit", "126"), files=files), "x126")
    assert p.returncode == 134 and "invalid exit status" in p.stderr, p.stderr
    p = rt("run", "--bundle", bundle(["/trap.wasm"], files=files), "trap")
    assert p.returncode == 134 and "unreachable" in p.stderr, p.stderr
    p = rt("run", "--bundle", bundle(["/text.wasm"], files=files), "text")
    assert p.returncode == 126 and "not a WebAssembly module" in p.stderr, p.stderr
    p = rt("run", "--bundle", bundle(["/component.wasm"], files=files), "comp")
    assert p.returncode == 126 and "component" in p.stderr, p.stderr
    # what runc refuses at create, so does rt-wasm: nothing is left
    for i, args in enumerate((["/missing.wasm"], ["missing.wasm"], ["/dir.wasm"])):
        p = rt("run", "--bundle", bundle(args, files=files), f"bad{i}")
        assert p.returncode != 0 and "exec:" in p.stderr, p.stderr
    p = rt("run", "--bundle", bundle(C("exit", "0"), files=files, edit=lambda c: c["process"].update(cwd="/nope")), "cwd")
    assert p.returncode != 0 and "cwd" in p.stderr
    assert rt("list", "-q").stdout == ""


# --- the filesystem the module sees ------------------------------------------------------------
def test_readonly_root_refuses_writes(rt, bundle, mods):
    files = {"conformance.wasm": mods["conformance"]}

    def ro(c):
        c["root"]["readonly"] = True
    b = bundle(C("write", "/tmp/out", "x"), files=files, edit=ro)
    p = rt("run", "--bundle", b, "ro")
    assert p.returncode == 1 and "conformance: /tmp/out" in p.stderr
    assert not os.path.exists(os.path.join(b, "rootfs", "tmp", "out"))
    b = bundle(C("write", "/tmp/out", "written"), files=files)
    p = rt("run", "--bundle", b, "rw")
    assert p.returncode == 0, p.stderr
    with open(os.path.join(b, "rootfs", "tmp", "out")) as f:
        assert f.read() == "written"


def test_bind_mounts(rt, bundle, mods, work):
    src = os.path.join(work, "shared")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "in.txt"), "w") as f:
        f.write("from the host\n")
    hosts = os.path.join(work, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")

    def binds(ro):
        def edit(c):
            c["mounts"] += [{"destination": "/mnt/shared", "type": "bind", "source": src,
                             "options": ["rbind", "ro" if ro else "rw"]},
                            {"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["bind", "ro"]}]
        return edit
    files = {"conformance.wasm": mods["conformance"]}
    p = rt("run", "--bundle", bundle(C("cat", "/mnt/shared/in.txt"), files=files, edit=binds(True)), "b1")
    assert (p.returncode, p.stdout) == (0, "from the host\n"), p.stderr
    p = rt("run", "--bundle", bundle(C("write", "/mnt/shared/no.txt", "x"), files=files, edit=binds(True)), "b2")
    assert p.returncode == 1 and not os.path.exists(os.path.join(src, "no.txt"))
    p = rt("run", "--bundle", bundle(C("write", "/mnt/shared/out.txt", "from the module"), files=files,
                                     edit=binds(False)), "b3")
    assert p.returncode == 0, p.stderr
    with open(os.path.join(src, "out.txt")) as f:
        assert f.read() == "from the module"
    # the module itself may live in a bind mount, and the cwd too
    with open(os.path.join(src, "echo.wasm"), "wb") as f:
        f.write(mods["echo"])

    def cwd_in_bind(c):
        binds(True)(c)
        c["process"]["cwd"] = "/mnt/shared"
    p = rt("run", "--bundle", bundle(["./echo.wasm", "in a bind"], files=files, edit=cwd_in_bind), "b4")
    assert (p.returncode, p.stdout) == (0, "./echo.wasm\nin a bind\n"), p.stderr
    p = rt("run", "--bundle", bundle(C("cat", "in.txt"), files=files, edit=cwd_in_bind), "b5")
    assert (p.returncode, p.stdout) == (0, "from the host\n"), p.stderr
    # a missing source fails create, as runc's mount would
    p = rt("run", "--bundle", bundle(C("exit", "0"), files=files, edit=lambda c: c["mounts"].append(
        {"destination": "/gone", "type": "bind", "source": os.path.join(work, "gone"), "options": ["rbind"]})), "b6")
    assert p.returncode != 0 and "no such file" in p.stderr


def test_nothing_outside_the_rootfs(rt, bundle, mods, work):
    """Symlinks in the image resolve inside it: for the module file, the cwd and the module's opens."""
    outside = os.path.join(work, "outside")
    os.makedirs(outside, exist_ok=True)
    with open(os.path.join(outside, "hello.wasm"), "wb") as f:
        f.write(mods["hello"])
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("host secret\n")
    files = {"conformance.wasm": mods["conformance"], "marker": "inside\n"}

    def links(rootfs):
        os.symlink(os.path.join(outside, "hello.wasm"), os.path.join(rootfs, "evil.wasm"))
        os.symlink("../../../../../../..", os.path.join(rootfs, "up"))
        os.symlink(outside, os.path.join(rootfs, "out"))

    def make(args, **kw):
        b = bundle(args, files=files, **kw)
        links(os.path.join(b, "rootfs"))
        return b
    # the absolute link resolves inside the rootfs, where it names nothing
    p = rt("run", "--bundle", make(["/evil.wasm"]), "e1")
    assert p.returncode != 0 and "hello, stdout" not in p.stdout
    # ... and there, a module of the image's own is what runs
    b = make(["/evil.wasm"])
    dest = os.path.join(b, "rootfs", outside.lstrip("/"))
    os.makedirs(dest)
    with open(os.path.join(dest, "hello.wasm"), "wb") as f:
        f.write(mods["echo"])
    p = rt("run", "--bundle", b, "e2")
    assert (p.returncode, p.stdout) == (0, "/evil.wasm\n"), p.stderr
    # a cwd that climbs out stays at the rootfs's top
    p = rt("run", "--bundle", make(C("cat", "marker"), edit=lambda c: c["process"].update(cwd="/up")), "e3")
    assert (p.returncode, p.stdout) == (0, "inside\n"), p.stderr
    # the module's own opens: WASI (cap-std) refuses a symlink out of the preopen
    p = rt("run", "--bundle", make(C("cat", "/out/secret")), "e4")
    assert p.returncode == 1 and "host secret" not in p.stdout
    p = rt("run", "--bundle", make(C("cat", "/up/" + outside.lstrip("/") + "/secret")), "e5")
    assert p.returncode == 1 and "host secret" not in p.stdout


# --- lifecycle, signals, cgroup ----------------------------------------------------------------
def status_of(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_create_start_kill_delete(rt, bundle, mods):
    b = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]})
    rt("create", "--bundle", b, "life", check=True, detach=True)
    st = rt.state("life")
    assert st["status"] == "created" and st["pid"] > 0
    pid = st["pid"]
    rt("start", "life", check=True)
    assert rt.state("life")["status"] == "running"
    s = status_of(pid)
    assert s["NSpid"].split()[-1] == "1"  # PID 1 of its pid namespace
    assert s["Uid"].split()[0] == "0" and s["NoNewPrivs"] == "1"
    assert s["CapEff"] == "0000000020000420"  # CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")  # a host process
    ps = json.loads(rt("ps", "--format", "json", "life", check=True).stdout)
    assert ps == [pid]
    time.sleep(0.3)  # well into the module
    rt("kill", "life", "TERM", check=True)  # no handler in a pid namespace's init: rt-wasm's own
    assert rt.wait_status("life", "stopped") == "stopped"
    rt("delete", "life", check=True)
    assert rt("state", "life").returncode != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_exit_status(rt, bundle, mods, work, env, sig):
    """rt run in the foreground: a signal to the container ends it with 128+N."""
    b = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]})
    cid = f"sig{int(sig)}"
    with open(os.path.join(work, f"{cid}.out"), "w+") as out:
        run = subprocess.Popen([rt.path, "--root", rt.root, "run", "--bundle", b, cid], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=out, env=env)
        try:
            deadline = time.monotonic() + 20
            while rt("state", cid).returncode != 0 or rt.state(cid)["status"] != "running":
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.05)
            time.sleep(0.3)
            rt("kill", cid, sig.name, check=True)
            assert run.wait(20) == 128 + sig
        finally:
            if run.poll() is None:
                rt("delete", "--force", cid)
                run.wait(20)


def test_pause_resume(rt, bundle, mods):
    b = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]}, cgroup="paused")
    rt("run", "-d", "--bundle", b, "pz", check=True, detach=True)
    pid = rt.state("pz")["pid"]
    freezer = [d for d in cgroup_dirs(f"{TAG}/paused") if "/freezer/" in d or os.path.exists(f"{d}/cgroup.freeze")]
    rt("pause", "pz", check=True)
    assert rt.state("pz")["status"] == "paused"
    for d in freezer:
        if os.path.exists(f"{d}/freezer.state"):
            assert open(f"{d}/freezer.state").read().strip() == "FROZEN"
        else:
            assert open(f"{d}/cgroup.freeze").read().strip() == "1"
    rt("resume", "pz", check=True)
    assert rt.state("pz")["status"] == "running"
    assert os.path.exists(f"/proc/{pid}")
    rt("kill", "pz", "KILL", check=True)
    rt.wait_status("pz", "stopped")
    rt("delete", "pz", check=True)


def test_memory_limit_holds_the_host(rt, bundle, mods):
    limit = 64 << 20

    def edit(c):
        c["linux"]["resources"] = {"memory": {"limit": limit}}
    files = {"conformance.wasm": mods["conformance"], "greedy.wasm": mods["greedy"]}
    rt("run", "-d", "--bundle", bundle(C("sleep"), files=files, edit=edit, cgroup="limited"), "mem", check=True,
       detach=True)
    pid = rt.state("mem")["pid"]
    dirs = cgroup_dirs(f"{TAG}/limited")
    v1 = [d for d in dirs if os.path.exists(f"{d}/memory.limit_in_bytes")]
    v2 = [d for d in dirs if os.path.exists(f"{d}/memory.max")]
    d = (v1 or v2)[0]
    assert int(open(f"{d}/{'memory.limit_in_bytes' if v1 else 'memory.max'}").read()) == limit
    assert pid in [int(x) for x in open(f"{d}/cgroup.procs").read().split()]
    rt("update", "--memory", str(96 << 20), "mem", check=True)
    assert int(open(f"{d}/{'memory.limit_in_bytes' if v1 else 'memory.max'}").read()) == 96 << 20
    rt("delete", "--force", "mem", check=True)
    # a module that touches 128 MiB is killed by it, not left to exceed it
    p = rt("run", "--bundle", bundle(["/greedy.wasm"], files=files, edit=edit), "greedy")
    assert p.returncode == 137, (p.returncode, p.stderr)
    p = rt("run", "--bundle", bundle(["/greedy.wasm"], files=files), "greedy2")
    assert p.returncode == 0, p.stderr


def test_exec_runs_another_module(rt, bundle, mods):
    files = {"conformance.wasm": mods["conformance"], "echo.wasm": mods["echo"]}
    rt("run", "-d", "--bundle", bundle(C("sleep"), files=files), "ex", check=True, detach=True)
    p = rt("exec", "ex", "/conformance.wasm", "print", "out", "err", "5")
    assert (p.returncode, p.stdout, p.stderr) == (5, "out\n", "err\n")
    p = rt("exec", "--cwd", "/tmp", "ex", "/echo.wasm", "x")
    assert (p.returncode, p.stdout) == (0, "/echo.wasm\nx\n"), p.stderr
    p = rt("exec", "ex", "/no/such.wasm")
    assert p.returncode == 127 and "No such file" in p.stderr
    rt("kill", "--all", "ex", "KILL", check=True)
    assert rt.wait_status("ex", "stopped") == "stopped"
    rt("delete", "ex", check=True)


def test_another_user(rt, bundle, mods):
    """The host runs as the spec's uid: what the module may write is what that user may."""
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    files = {"conformance.wasm": mods["conformance"]}
    b = bundle(C("write", "/owned-by-root", "x"), files=files, edit=edit)
    p = rt("run", "--bundle", b, "u1")
    assert p.returncode == 1 and not os.path.exists(os.path.join(b, "rootfs", "owned-by-root"))
    b = bundle(C("write", "/tmp/mine", "x"), files=files, edit=edit)
    p = rt("run", "--bundle", b, "u2")
    assert p.returncode == 0, p.stderr
    assert os.stat(os.path.join(b, "rootfs", "tmp", "mine")).st_uid == 1000


def test_sysctls_apply_in_the_container_s_namespaces(rt, bundle, mods):
    """linux.sysctl lands in the container's own network namespace, not in the host's."""
    key = "/proc/sys/net/ipv4/ping_group_range"
    with open(key) as f:
        host = f.read().split()
    want = ["0", "0"] if host != ["0", "0"] else ["1", "0"]

    def edit(c):
        c["linux"]["sysctl"] = {"net.ipv4.ping_group_range": " ".join(want)}
    b = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]}, edit=edit)
    rt("run", "-d", "--bundle", b, "sy", check=True, detach=True)
    pid = rt.state("sy")["pid"]
    inside = subprocess.run(["nsenter", "-t", str(pid), "-n", "cat", key], capture_output=True, text=True,
                            check=True).stdout.split()
    assert inside == want
    with open(key) as f:
        assert f.read().split() == host
    rt("delete", "--force", "sy", check=True)


# --- what an adversarial review found -------------------------------------------------------------
def test_container_hooks_are_refused(rt, bundle, mods, work):
    """startContainer/createContainer hooks name programs of the container's root; the host
    process has the host's root, so they would run host programs: refused, nothing left."""
    proof = os.path.join(work, "hook-ran")

    def edit(c):
        c["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {proof}"]}]}
    p = rt("run", "--bundle", bundle(C("exit", "0"), files={"conformance.wasm": mods["conformance"]}, edit=edit), "hk")
    assert p.returncode != 0 and "hooks are not supported" in p.stderr, p.stderr
    assert not os.path.exists(proof)


def test_the_environment_is_not_on_the_world_readable_command_line(rt, bundle, mods):
    def edit(c):
        c["process"]["env"] += ["DB_PASSWORD=hunter2", "LD_PRELOAD=/no/such/lib.so"]
    b = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]}, edit=edit)
    rt("run", "-d", "--bundle", b, "env", check=True, detach=True)
    pid = rt.state("env")["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"hunter2" not in f.read()
    assert os.stat(f"/proc/{pid}/environ").st_mode & 0o077 == 0  # owner-only, as under runc
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
    assert b"RT_WASM_ENV_2=DB_PASSWORD=hunter2" in environ  # under inert names: no LD_PRELOAD for ld.so
    assert b"RT_WASM_ENV_3=LD_PRELOAD=/no/such/lib.so" in environ
    assert not any(e.startswith(b"LD_PRELOAD=") for e in environ)
    p = rt("exec", "env", "/conformance.wasm", "getenv", "DB_PASSWORD")
    assert (p.returncode, p.stdout) == (0, "hunter2\n"), p.stderr
    rt("delete", "--force", "env", check=True)


def test_a_fifo_or_device_as_the_module_is_never_opened(rt, bundle, work):
    """The image decides what its program is: create must not block on a fifo (or open a device)."""
    b = bundle(["/app.wasm"])
    os.mkfifo(os.path.join(b, "rootfs", "app.wasm"))
    p = rt("create", "--bundle", b, "fifo", timeout=30, detach=True)
    assert p.returncode != 0 and "app.wasm" in p.stderr, p.stderr


def test_a_plain_bind_over_mounts_is_refused(rt, bundle, mods, work):
    """A preopen shows what is mounted below its directory, which a non-recursive bind hides."""
    src = os.path.join(work, "with-submount")
    os.makedirs(os.path.join(src, "sub"), exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "rt-wasm-test", os.path.join(src, "sub")], check=True)
    try:
        def bind(kind):
            return lambda c: c["mounts"].append({"destination": "/data", "type": "bind", "source": src,
                                                 "options": [kind, "ro"]})
        files = {"conformance.wasm": mods["conformance"]}
        p = rt("run", "--bundle", bundle(C("exit", "0"), files=files, edit=bind("bind")), "b1")
        assert p.returncode != 0 and "non-recursive bind" in p.stderr, p.stderr
        p = rt("run", "--bundle", bundle(C("exit", "0"), files=files, edit=bind("rbind")), "b2")
        assert p.returncode == 0, p.stderr  # rbind shows them under runc too
    finally:
        subprocess.run(["umount", os.path.join(src, "sub")], check=True)


def _holds(pid: int, path: str) -> bool:
    """Has process `pid` an fd open on `path`?"""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def test_a_bind_source_swapped_after_create_is_refused(rt, bundle, mods, work):
    """A source the container can write to, replaced by a symlink to host files between create
    and start (or exec), is not followed: the host pins each source's identity at create."""
    b = bundle(C("cat", "/vol/hostname"), files={"conformance.wasm": mods["conformance"]},
               edit=lambda c: c["mounts"].append({"destination": "/vol", "type": "bind", "source": "rootfs/vol",
                                                  "options": ["rbind", "ro"]}))
    vol = os.path.join(b, "rootfs", "vol")
    os.makedirs(vol)
    out = os.path.join(work, "swap.out")
    with open(out, "w") as f:  # the container's stdio is create's
        subprocess.run([rt.path, "--root", rt.root, "create", "--bundle", b, "swap"], stdin=subprocess.DEVNULL,
                       stdout=f, stderr=f, env=rt.env, check=True, timeout=60)
    os.rmdir(vol)
    os.symlink("/etc", vol)
    rt("start", "swap", check=True)
    assert rt.wait_status("swap", "stopped") == "stopped"
    rt("delete", "swap", check=True)
    with open(out) as f:
        text = f.read()
    with open("/etc/hostname") as f:
        assert f.read().strip() not in text.split() and "no longer the directory it was at create" in text, text
    b2 = bundle(C("sleep"), files={"conformance.wasm": mods["conformance"]},
                edit=lambda c: c["mounts"].append({"destination": "/vol", "type": "bind", "source": "rootfs/vol",
                                                   "options": ["rbind", "ro"]}))
    vol = os.path.join(b2, "rootfs", "vol")
    os.makedirs(vol)
    rt("run", "-d", "--bundle", b2, "swap2", check=True, detach=True)
    pid, deadline = rt.state("swap2")["pid"], time.monotonic() + 30
    while not _holds(pid, vol):  # the init's own view is pinned: the swap is for the exec to meet
        assert time.monotonic() < deadline, "the init never opened its bind source"
        time.sleep(0.05)
    os.rmdir(vol)
    os.symlink("/etc", vol)
    p = rt("exec", "swap2", "/conformance.wasm", "cat", "/vol/hostname")
    assert p.returncode == 126 and "no longer the directory" in p.stderr and not p.stdout, (p.stdout, p.stderr)
    rt("delete", "--force", "swap2", check=True)
