"""The per-container shim process: `python -I -S -c "...import stub; stub.main()" RFD WFD`.

It must stay lean: it is the process that waits between `create` and `start`,
so it imports only builtins and ctypes (no site-packages, no rt modules). It is split by
concern: stub_sys (libc, numbers), stub_mounts (the rootfs), stub_security (the process).
The core sends it a *plan* (plain data, built and validated in the core);
the stub joins/creates namespaces, forks the container init as PID 1 of the new
pid namespace, prepares the rootfs, reports `ready`, waits at the exec fifo
and execs the user program. Frames: 4-byte big-endian length + marshal payload,
each payload a dict with a "type" key (see rt.shim.protocol).
"""
import ctypes
import fcntl
import os
import sys

import frames
import stub_security
from stub_mounts import (do_mounts, finish_rootfs, idmapped_tree, loopback_up, mount_point_of, pivot, userns_fd_for,
                         write_sysctls)
from stub_security import (apply_caps, connect_listener, drop_bounding, find_exec, helper_exec, load_seccomp,  # noqa: F401
                           lsm_attr, mark_cloexec, reset_signals, run_hooks, set_scheduling, set_user, setup_terminal)
from stub_sys import (AT_FDCWD, AT_RECURSIVE, MOVE_MOUNT_F_EMPTY_PATH, MS, NS_FLAGS, OPEN_TREE_CLONE,  # noqa: F401
                      PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, SYS_MOVE_MOUNT, SYS_OPEN_TREE, Fail, b, check, libc, mount)

PROTOCOL_VERSION = 1


# --- framing (shim/frames.py) -------------------------------------------------
def send(fd, msg):
    try:
        frames.send(fd, msg)
    except BrokenPipeError:  # the core is gone (a killed create): no one to report to, no traceback
        os._exit(1)


def recv(fd):
    try:
        return frames.recv(fd)
    except EOFError:
        return None  # the core went away mid-frame: as at EOF


def caller_ns_mounts(plan):
    """A new container (not an exec) whose mounts go into the caller's mount namespace."""
    return (not plan["unshare_mount"] and not any(ns == "mount" for ns, _ in plan["join"]) and plan["rootfs"]
            and plan["fifo"] is not None and bool(plan["mounts"] or plan["readonly"]))


def container_init(plan, wfd, rfd, fifo, listener):
    # every container process leads a session of its own, as runc's: none reaches back to the
    # caller's session or terminal, and CRIU can dump an init whose session is in its pid namespace
    os.setsid()
    p = plan["process"]
    rootfs = plan["rootfs"]
    mnt = plan["unshare_mount"]
    sc = plan.get("seccomp")
    try:
        stub_security.HOST_PID = int(os.readlink("/proc/self"))  # still the host's /proc
    except (OSError, ValueError):
        stub_security.HOST_PID = os.getpid()
    if plan["loopback"]:
        loopback_up()  # before pivot_root: it imports extension modules from the host
    if plan.get("console_fd") is not None:
        import _socket  # noqa: F401  (loaded now: after pivot_root the host's modules are gone)
    if mnt:
        mount(None, "/", None, plan["host_propagation"])
        if plan.get("rootfs_tree_fd") is not None:  # the rootfs, idmapped while we were host root
            check(libc.syscall(SYS_MOVE_MOUNT, plan["rootfs_tree_fd"], b"", AT_FDCWD, b(rootfs),
                               MOVE_MOUNT_F_EMPTY_PATH), "move_mount rootfs")
            os.close(plan["rootfs_tree_fd"])
        else:
            mount(rootfs, rootfs, None, MS["bind"] | MS["rec"])
        if plan["host_propagation"] & MS["shared"]:
            # pivot_root refuses shared mounts around the new root (EINVAL): make the new
            # root, its parent mount and / private; finish_rootfs applies rootfsPropagation.
            for path in (rootfs, mount_point_of(os.path.dirname(rootfs)), "/"):
                mount(None, path, None, MS["private"])
        do_mounts(plan, rootfs)
    elif caller_ns_mounts(plan):
        # No mount namespace of its own: the mounts go into the caller's, under the rootfs, as
        # runc and crun make them; the core records them and detaches them at delete.
        mount(rootfs, rootfs, None, MS["bind"] | MS["rec"])
        do_mounts(plan, rootfs)
    hooks = plan.get("hooks") or {}
    state = ""
    if plan.get("hook_sync"):
        send(wfd, {"type": "hooks", "stage": "createRuntime"})
        msg = recv(rfd)
        if not msg or msg.get("type") != "resume":
            raise Fail("aborted while the runtime ran createRuntime hooks")
        state = msg.get("state", "")
        run_hooks("createContainer", hooks.get("createContainer", []), state, plan["exec_fd"])
    if rfd >= 0:
        os.close(rfd)
    if mnt:
        pivot(rootfs, plan["no_pivot"])
        write_sysctls(plan)  # before readonlyPaths makes /proc/sys read-only
        finish_rootfs(plan)
    elif rootfs:
        os.chroot(rootfs)
        os.chdir("/")
        write_sysctls(plan)
        if caller_ns_mounts(plan):
            finish_rootfs(plan)
    else:  # no rootfs (a host process, as rt-wasm's): the caller's /proc shows our own namespaces
        write_sysctls(plan)
    if plan["hostname"] is not None:
        h = b(plan["hostname"])
        check(libc.sethostname(h, len(h)), "sethostname")
    if plan["domainname"] is not None:
        h = b(plan["domainname"])
        check(libc.setdomainname(h, len(h)), "setdomainname")
    for res, soft, hard, *name in plan["rlimits"]:
        check(libc.prlimit(0, res, ctypes.byref((ctypes.c_uint64 * 2)(soft, hard)), None),
              f"setrlimit {name[0] if name else res} (soft {soft}, hard {hard})")
    if plan["oom_score_adj"] is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(plan["oom_score_adj"]))
    set_scheduling(p)  # while we still have the capabilities an RT policy needs
    if plan.get("console_fd") is not None:
        setup_terminal(plan["console_fd"], plan.get("console_size"), bool(mnt))
    exe = find_exec(p["args"][0], p["env"])
    try:
        os.chdir(p["cwd"])
    except OSError as e:
        raise Fail(f"chdir to cwd ({p['cwd']!r}) set in config.json failed: {e.strerror}")
    reset_signals()
    if sc and not p["no_new_privs"]:
        load_seccomp(sc, listener)  # without no_new_privs this needs CAP_SYS_ADMIN: load while we have it
    if p["caps"] is not None:
        drop_bounding(p["caps"], plan["last_cap"])
    set_user(p)
    if p["caps"] is not None:
        apply_caps(p["caps"])
    # CVE-2024-21626: no fd of ours crosses exec, except the preserved ones (before the
    # filter, which may not allow close_range)
    mark_cloexec(3 + plan["preserve_fds"])
    if p["no_new_privs"]:
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
        if sc:
            load_seccomp(sc, listener)  # as late as possible, so the filter sees only the workload
    send(wfd, {"type": "ready", "pid": os.getpid()})
    os.close(wfd)
    if fifo >= 0:
        # The start barrier: `rt start` writes one byte into exec.fifo.
        while not os.read(fifo, 1):
            pass
    if hooks.get("startContainer"):
        try:
            run_hooks("startContainer", hooks["startContainer"], state.replace('"created"', '"running"'),
                      plan["exec_fd"], (sc or {}).get("execveat", True))
        except Fail as e:
            os.write(2, f"{e}\n".encode())
            os._exit(1)
    try:
        if plan.get("personality") is not None:
            check(libc.personality(ctypes.c_ulong(plan["personality"])), "linux.personality")
        if (p.get("affinity") or [None, None])[1] is not None:
            os.sched_setaffinity(0, p["affinity"][1])  # execCPUAffinity.final: the workload's
        helper_exec(plan["exec_fd"], exe, p["args"], dict(e.split("=", 1) for e in p["env"]),
                    lsm_attr(plan.get("lsm") or {}), (sc or {}).get("execveat", True))
    except Fail as e:
        os.write(2, f"{e}\n".encode())
        os._exit(1)
    except OSError as e:
        os.write(2, f"exec rt-exec: {e.strerror}\n".encode())
        os._exit(127)


def enter_namespaces(plan, rfd, wfd):
    if plan.get("console_fd") is not None or plan["loopback"]:
        import _socket  # noqa: F401  (extension modules load from the host, before setns(mnt))
    if plan.get("join_pidfd") is not None and plan["join_types"]:
        flags = 0
        for ns in plan["join_types"]:
            flags |= NS_FLAGS[ns]
        check(libc.setns(plan["join_pidfd"], flags), "setns through the init's pidfd")
    for ns, path in plan["join"]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            check(libc.setns(fd, NS_FLAGS[ns]), f"setns {ns} {path}")
        finally:
            os.close(fd)
    rest = [ns for ns in plan["unshare"] if ns != "user"]
    if "user" in plan["unshare"]:
        # The user namespace first, alone: the core writes our uid/gid maps, and every
        # namespace made after it is owned by it.
        check(libc.unshare(NS_FLAGS["user"]), "unshare user namespace")
        send(wfd, {"type": "idmap", "pid": os.getpid()})
        msg = recv(rfd)
        if not msg or msg.get("type") != "resume":
            raise Fail("aborted while the runtime wrote the id maps")
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if plan.get("userns"):
        os.setresgid(0, 0, 0)  # root of the user namespace until the container's user is set
        os.setresuid(0, 0, 0)
    flags = 0
    for ns in rest:
        flags |= NS_FLAGS[ns]
    if flags:
        check(libc.unshare(flags), "unshare")
    if plan.get("time_offsets"):  # before any process is in the new time namespace (our child)
        try:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write(plan["time_offsets"])
        except OSError as e:
            raise Fail(f"linux.timeOffsets: {e.strerror}", "errno:%d" % e.errno)


def main():
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    # CVE-2019-5736: nothing in the container may open /proc/<us>/exe while we run. A rootless
    # caller writes our id maps, which /proc gives only to our owner: non-dumpable after that.
    rootless = os.geteuid() != 0
    if not rootless:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    send(wfd, {"type": "hello", "version": PROTOCOL_VERSION, "pid": os.getpid()})
    msg = recv(rfd)
    if msg is None:
        os._exit(1)
    plan = msg["plan"]
    if rootless and "user" not in plan["unshare"]:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for fd in (plan.get("exec_fd"), plan.get("join_pidfd")):  # ours: never the workload's, even
        if fd is not None:  # when they fall in the --preserve-fds range (fexecve needs no inheritance)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    try:
        # host paths first: in a user namespace, host root's files are out of reach
        fifo = os.open(plan["fifo"], os.O_RDWR | os.O_CLOEXEC) if plan["fifo"] else -1
        sc = plan.get("seccomp")
        listener = connect_listener(sc["listener"]) if sc and sc["listener"] else None
        if plan.get("rootfs_idmap"):
            userns = userns_fd_for(plan["rootfs_idmap"])
            plan["rootfs_tree_fd"] = idmapped_tree(plan["rootfs"], userns, True)
            os.close(userns)
        for m in plan["mounts"]:
            if m.get("idmap"):
                userns = userns_fd_for(m["idmap"])
                m["tree_fd"] = idmapped_tree(m["source"], userns, m["recursive"])
                os.close(userns)
            elif m["bind"] and plan.get("userns") and os.geteuid() == 0:
                # host paths may be out of reach of the namespace's root: take them now (a
                # rootless caller reaches no more than its namespace's root will, and may not clone)
                m["tree_fd"] = check(libc.syscall(
                    SYS_OPEN_TREE, AT_FDCWD, b(m["source"]),
                    OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if m["recursive"] else 0)),
                    f"open_tree {m['source']}")
        enter_namespaces(plan, rfd, wfd)
        if not plan.get("hook_sync"):
            os.close(rfd)
            rfd = -1
        # The init writes to the pipe we write to: it starts once `child` is sent.
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except Fail as e:
        send(wfd, {"type": "error", "reason": str(e), "kind": e.kind})
        os._exit(1)
    except OSError as e:
        send(wfd, {"type": "error", "reason": f"{e.strerror}: {e.filename or ''}", "kind": "errno:%d" % e.errno})
        os._exit(1)
    if pid:
        send(wfd, {"type": "child", "pid": pid})
        os._exit(0)
    os.close(gate_w)
    os.read(gate_r, 1)  # EOF once the shim has sent `child` and exited
    os.close(gate_r)
    try:
        container_init(plan, wfd, rfd, fifo, listener)
    except Fail as e:
        send(wfd, {"type": "error", "reason": str(e), "kind": e.kind})
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        send(wfd, {"type": "error", "reason": f"{e.strerror}{where}", "kind": "errno:%d" % e.errno})
    except BaseException as e:  # report, never hang the core
        send(wfd, {"type": "error", "reason": f"{type(e).__name__}: {e}", "kind": "error"})
    os._exit(127)


if __name__ == "__main__":
    main()
