"""The lxc_system backend: an OciBackend whose process is an init, with what systemd's
container interface asks of a manager (container=, /run/host, a writable cgroup subtree,
/proc/sys/net writable) and, with rt.net.* annotations, a veth on an rt bridge."""
import os
import sys
import uuid

from rt.core import api

from .settings import decode

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
HERE = os.path.dirname(os.path.abspath(__file__))
MONITOR, MONITOR_C = os.path.join(HERE, "monitor.py"), os.path.join(HERE, "monitor.c")
NOTIFY = "/run/host/notify"  # the init's sd_notify socket, as systemd-nspawn places it
# What systemd-nspawn keeps for a system container (systemd.io/CONTAINER_INTERFACE): MKNOD
# and SYS_ADMIN included, the host-wide ones (SYS_MODULE, SYS_TIME, ...) left out.
SYSTEM_CAPS = [
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_MKNOD",
    "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_NICE",
    "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CAP_SYS_TTY_CONFIG",
]


def container_uuid(cid: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rt:{cid}")).replace("-", "")


def monitor_command(warn) -> list[str]:
    """The console monitor: monitor.c, built once (api.build_c_helper), or else monitor.py
    (the same behaviour at about 5 MiB more per container). RT_SYSTEM_MONITOR=python
    picks the fallback."""
    if os.environ.get("RT_SYSTEM_MONITOR") != "python":
        path, why = api.build_c_helper(MONITOR_C, "lxc-monitor")
        if path:
            return [path]
        warn(f"lxc_system: the console monitor runs in Python: {why}")
    return [sys.executable, "-I", "-S", MONITOR]


def _has_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().split())
    except OSError:
        return False


def _run_host(state_dir: str) -> str:
    """<state>/run-host with os-release and container-manager, bound read-only at /run/host."""
    d = os.path.join(state_dir, "run-host")
    os.makedirs(d, exist_ok=True)
    for src in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(src, "rb") as f, open(os.path.join(d, "os-release"), "wb") as out:
                out.write(f.read())
            break
        except OSError:
            continue
    with open(os.path.join(d, "container-manager"), "w") as f:
        f.write("rt\n")
    return d


class SystemBackend(api.OciBackend):
    name = "lxc_system"
    supports = frozenset({"posix", "namespaces", "exec", "ps", "kill-all", "pause", "update", "terminal", "hooks", "userns"})  # checked by `rt conformance`
    payload_cgroup = "ns"  # the container's own subtree; the limits stay on its parent

    def prepare(self, req, plan) -> None:
        self._system_caps(req.spec.annotations, plan, req.warn)
        env = plan.process.env
        for var in ("container=rt", f"container_uuid={container_uuid(req.id)}"):
            if not any(e.split("=", 1)[0] == var.split("=", 1)[0] for e in env):
                env.append(var)
        plan.unshare_namespace("cgroup")
        for m in plan.mounts:
            if m.destination == "/sys/fs/cgroup":
                m.flags &= ~MS_RDONLY  # systemd manages its own subtree
        plan.mounts.append(api.MountPlan(source=_run_host(req.state_dir), destination="/run/host",
                                         flags=MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
        plan.rw_binds = ["/proc/sys/net"]
        _, system = decode(req.spec.annotations)
        if system.userns == "auto":
            self._unprivileged(req, plan)
        if not req.console_socket:  # a console of our own, kept by a small monitor
            plan.console_fd = self._start_monitor(req, spawn=not self._keeper)
            if not any(e.startswith("NOTIFY_SOCKET=") for e in env):
                env.append(f"NOTIFY_SOCKET={NOTIFY}")
        if "/proc/sys" not in plan.readonly_paths:
            plan.readonly_paths.append("/proc/sys")

    def prepare_exec(self, c, plan) -> None:
        self._system_caps(c.record.get("annotations"), plan, lambda msg: None)

    @staticmethod
    def _system_caps(annotations, plan, warn) -> None:
        """Unless rt.system.capabilities=spec, the process gets systemd-nspawn's set; without a
        user namespace, less CAP_DAC_READ_SEARCH: with it open_by_handle_at reaches any host
        file by its inode number (Docker's 'shocker'), and CAP_DAC_OVERRIDE already lets root
        inside read its own files."""
        _, system = decode(annotations)
        if system.capabilities == "system" and plan.process.uid == 0:
            from rt.spec.config import Capabilities
            have = SYSTEM_CAPS if system.userns == "auto" else [c for c in SYSTEM_CAPS if c != "CAP_DAC_READ_SEARCH"]
            caps = Capabilities(bounding=have, effective=have, permitted=have, inheritable=[], ambient=[])
            plan.process.caps = api.CapsPlan(**api.capability_plan(caps, warn))

    def on_child(self, req, pid: int) -> None:
        net, _ = decode(req.spec.annotations)
        if net is not None:
            api.attach_network(req, net, kind="veth", prefix="rtv", pid=pid)

    @staticmethod
    def _unprivileged(req, plan) -> None:
        """Root inside is an unprivileged host id from rt's own ranges; the rootfs is seen
        through an idmapped mount (no chown), and the container's cgroup is handed to it."""
        if plan.has_namespace("user"):
            raise api.RtError("config.json: $.annotations: rt.system.userns=auto and a user namespace "
                              "in linux.namespaces do not go together")
        base = api.IdRanges(os.path.dirname(req.state_dir)).lease(req.id)
        req.save_extra(idrange=base)
        maps = {"uid_map": f"0 {base} 65536\n", "gid_map": f"0 {base} 65536\n"}
        plan.unshare_namespace("user")
        plan.userns = maps
        # on-disk ids 0..65535 appear as base..base+65535, so container root owns its files
        plan.rootfs_idmap = {"uid_map": f"0 {base} 65536\n", "gid_map": f"0 {base} 65536\n"}
        for d in api.Cgroup(f"{req.extra['cgroup']}/{SystemBackend.payload_cgroup}").dirs().values():
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads", "tasks"):
                path = os.path.join(d, name)
                if os.path.exists(path):
                    os.chown(path, base, base)

    _keeper = False  # set in the forked keeper, which becomes the monitor itself

    def create(self, req):
        """Without a caller that reaps the init, the monitor is its parent (a subreaper), so
        that it sees an in-guest reboot (the init killed by SIGHUP) and restarts the container,
        as lxc-start does. With one (conmon, containerd, `rt run`), a reboot ends the container."""
        if req.console_socket or req.caller_reaps:
            return super().create(req)
        api.require_caller("lxc_system's keeper is a fork of the caller's rt")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the keeper: create from here, then exec the monitor
            os.close(r)
            try:
                api.adopt_orphans()  # in-process here (require_caller): the init's orphans come to us
                self._keeper = True
                req.save_extra(keeper=True)
                created = super().create(req)
                out = {"pid": created.pid, "extra": {**req.extra, **created.extra}}
            except api.RtError as e:
                out = {"error": e.msg}
            except api.ShimFailed as e:
                out = {"error": e.reason}
            except BaseException as e:
                out = {"error": f"create: {e}"}
            try:  # nothing may unwind into the caller's frames from this fork
                api.frames.send(w, out)
                # w is close-on-exec: the caller's EOF comes once the monitor is in place
                if "error" not in out:
                    self._exec_monitor(req)
            finally:
                os._exit(1)
        os.close(w)
        try:
            out = api.frames.recv(r)
            while os.read(r, 4096):  # then EOF: w is close-on-exec, so the monitor is in place
                pass
        except (EOFError, ValueError):
            out = None
        finally:
            os.close(r)
        if not isinstance(out, dict):
            out = {"error": "create: the container's monitor exited during create"}
        if "error" in out:
            os.waitpid(pid, 0)
            raise api.RtError(out["error"])
        req.extra.update(out["extra"])
        return api.Created(out["pid"], out["extra"])

    def _start_monitor(self, req, spawn: bool) -> int:
        """A socketpair whose other end goes to monitor.py (the shim sends the pty master to
        ours), and the bound notify socket; monitor.py is spawned now, or exec'd by the keeper."""
        import socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # the shim's message then carries its pid (it execs the init): the monitor ends with it
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        fd = theirs.detach()
        os.set_inheritable(fd, True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(os.path.join(req.state_dir, "run-host", "notify"))
        nfd = notify.detach()
        os.set_inheritable(nfd, True)
        argv = monitor_command(req.warn) + [str(fd), req.state_dir, str(nfd)]
        if not spawn:
            self._monitor_argv = argv + ["--", sys.executable, "-m", "rt.core", "--root",
                                         os.path.dirname(req.state_dir), "reboot", req.id]
            req.save_extra(monitor={"pid": os.getpid(), "start": api.proc_start_time(os.getpid())[0]})
            return ours.detach()
        null = log = -1
        try:  # the caller's child, as the init is (under the core: its front end forks it)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            log = os.open(os.path.join(req.state_dir, "monitor.log"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            monitor = api.spawn(argv[0], argv, fds={0: null, 1: null, 2: log, fd: fd, nfd: nfd}, setsid=True)
            pid = monitor.pid
            monitor.close()
        finally:
            for f in (fd, nfd, null, log):
                if f >= 0:
                    os.close(f)
        req.save_extra(monitor={"pid": pid, "start": api.proc_start_time(pid)[0]})
        return ours.detach()

    def _exec_monitor(self, req) -> None:
        try:
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            log = os.open(os.path.join(req.state_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            for target, src in ((0, null), (1, null), (2, log)):
                os.dup2(src, target)
            os.execv(self._monitor_argv[0], self._monitor_argv)
        except OSError:
            os._exit(127)

    def wait_ready(self, c, timeout: float) -> None:
        """sd_notify READY=1 when the init sends it (systemd); else, for an init without
        a notify socket, `systemctl is-system-running`; for any other init, its first child."""
        import sys
        import time
        deadline = time.monotonic() + timeout
        ready = os.path.join(c.dir, "ready")
        notify = bool(c.extra.get("monitor"))
        st = os.stat(sys.executable)
        ours = (st.st_dev, st.st_ino)
        while time.monotonic() < deadline:
            try:
                exe = os.readlink(f"/proc/{c.pid}/exe")
                st = os.stat(f"/proc/{c.pid}/exe")
            except OSError:
                raise api.RtError(f"{c.id}: the init exited before it was ready")
            if not c.alive():
                raise api.RtError(f"{c.id}: the init exited before it was ready")
            # until the init has exec'd the container's program it is still rt's (the exec helper)
            systemd = os.path.basename(exe) == "systemd"
            if (st.st_dev, st.st_ino) == ours or exe.startswith("/memfd:rt-exec"):  # the stub, or the helper
                pass
            elif systemd and notify:
                if os.path.exists(ready):
                    return
            elif systemd:
                if self._is_system_running(c):
                    return
            elif _has_child(c.pid):
                return
            time.sleep(0.01 if notify or not systemd else 0.25)
        raise api.RtError(f"{c.id}: not ready after {timeout:g} s")

    @staticmethod
    def _is_system_running(c) -> bool:
        import subprocess
        root = os.path.dirname(c.dir)
        p = subprocess.run([sys.executable, "-m", "rt.core", "--root", root, "exec", c.id, "systemctl",
                            "is-system-running"], capture_output=True, text=True)
        return p.stdout.strip() in ("running", "degraded")

    def release(self, c) -> None:
        """Every step runs even if one fails (the lease is returned whatever happened to
        the veth); the failures are reported together afterwards."""
        root, net = os.path.dirname(c.dir), c.extra.get("net")
        steps = []
        if c.extra.get("idrange") is not None:
            steps.append(("id range", lambda: api.IdRanges(root).release(c.id)))
        if c.extra.get("monitor"):
            steps.append(("monitor", lambda: self._kill_monitor(c.extra["monitor"])))
        if net:
            steps.append((f"network in {net['subnet']}", lambda: api.release_network(root, c.id, net)))
        failed = []
        for what, step in steps:
            try:
                step()
            except Exception as e:
                failed.append(f"{what}: {e}")
        if failed:
            raise api.RtError(f"{c.id}: could not release " + "; ".join(failed))

    @staticmethod
    def _kill_monitor(mon: dict) -> None:
        try:
            if mon["pid"] != os.getpid() and (api.proc_start_time(mon["pid"]) or (None,))[0] == mon["start"]:
                os.kill(mon["pid"], 9)
        except (OSError, ValueError, IndexError):
            pass
