"""The hypervisor_kvm backend: the bundle's process runs in a QEMU microvm with its own
kernel. The container's pid is the VM shim (vmshim.py), which owns QEMU and virtiofsd and
serves the verbs below over <state>/shim.sock."""
import json
import os
import sys

from rt.core import api

from . import wire

SHIM_SOCK = "shim.sock"
DEFAULT_MEMORY_MB = 256
QEMU_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vdi": "vdi", "vmdk": "vmdk", "vhd": "vpc"}  # OCI name -> QEMU's
SEABIOS = ("/usr/share/seabios/bios-256k.bin", "/usr/share/qemu/bios-256k.bin")
VIRTIOFSD = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd")
FS_TYPES = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs"}


def shim_argv(module: str) -> list[str]:
    """The interpreter line for a shim. Installed normally, it runs under -S with rt's own
    directory on its path: site (and its .pth files) would cost ~2 ms before QEMU starts, and
    the shim needs only the standard library and rt. An editable install needs site."""
    parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if os.path.isfile(os.path.join(parent, "rt", "plugins", "hypervisor_kvm", f"{module}.py")):
        return [sys.executable, "-I", "-S", "-c",
                f"import sys; sys.path.insert(0, {parent!r}); from rt.plugins.hypervisor_kvm.{module} import main; main()"]
    return [sys.executable, "-I", "-m", f"rt.plugins.hypervisor_kvm.{module}"]


def rootfs_mode(want: str, virtiofsd: str | None, warn) -> str:
    """How the rootfs reaches the guest: virtio-fs (no copy), or packed into the initrd."""
    if want == "virtiofs" and virtiofsd is None:
        raise api.RtError("hypervisor_kvm: rt.vm.rootfs=virtiofs, but virtiofsd is missing "
                          "(it comes with qemu-system-x86)")
    if want == "auto" and virtiofsd is None:
        warn("hypervisor_kvm: virtiofsd is missing; the rootfs is packed into the initrd (a copy: "
             "writes stay in the VM)")
        return "initrd"
    return "initrd" if want == "initrd" else "virtiofs"


def _size(spec, vm) -> tuple[int, int]:
    """(MiB, vCPUs): rt.vm.* first, then linux.resources memory limit and cpu quota."""
    res = spec.linux.resources if spec.linux and spec.linux.resources else None
    memory = vm.memory or ((res.memory.limit // (1 << 20)) if res and res.memory and res.memory.limit
                           and res.memory.limit > 0 else DEFAULT_MEMORY_MB)
    if memory < 64:
        raise api.RtError(f"hypervisor_kvm: linux.resources.memory.limit ({memory} MiB) is too small for a VM")
    cpus = int(vm.cpus) or 1
    if not vm.cpus and res and res.cpu and res.cpu.quota and res.cpu.period:
        cpus = max(1, -(-res.cpu.quota // res.cpu.period))
    return int(memory), min(cpus, os.cpu_count() or 1)


def choose_accel(want: str) -> tuple[str, str]:
    """(accelerator, why): KVM on real hardware virtualization, else TCG."""
    if want == "tcg":
        return "tcg", "forced by rt.vm.accel=tcg"
    problem = None
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        problem = "/dev/kvm is missing or not accessible"
    elif os.path.exists("/sys/module/kvm_pvm"):
        problem = "/dev/kvm is PVM (software-nested KVM), which stock guest kernels do not boot under"
    else:
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
            if " vmx" not in flags and " svm" not in flags:
                problem = "the CPU has no VT-x/AMD-V"
        except OSError:
            pass
    if problem is None:
        return "kvm", "hardware virtualization is available"
    if want == "kvm":
        raise api.RtError(f"hypervisor_kvm: rt.vm.accel=kvm, but {problem}")
    return "tcg", f"software emulation, because {problem}"


def find_virtiofsd() -> str | None:
    return next((p for p in VIRTIOFSD if os.access(p, os.X_OK)), None)


MIN_GUEST = 64 << 20  # below this, a balloon would starve the guest's agent and kernel


def _call(c, req: dict, timeout: float = 30.0, fds: list[int] = ()) -> dict:
    """One request to the container's shim and its reply."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(os.path.join(c.dir, SHIM_SOCK))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ProcessLookupError(c.id)
        socket.send_fds(s, [wire.msg(req)], list(fds)) if fds else s.sendall(wire.msg(req))
        dec = wire.Decoder()
        while True:
            data = s.recv(65536)
            if not data:
                raise api.RtError(f"{req['op']}: the VM shim went away")
            for _, _, reply in dec.feed(data):
                if reply.get("op") == "error":
                    raise api.RtError(reply["error"])
                return reply
    finally:
        s.close()


def _guest_seccomp(spec, warn=lambda m: None) -> dict | None:
    """linux.seccomp compiled here (libseccomp) to the BPF that the agent loads in the guest."""
    sc = spec.linux.seccomp if spec.linux else None
    if sc is None:
        return None
    compiled = api.compile_seccomp(sc, warn)
    if compiled.get("listener"):
        raise api.RtError("hypervisor_kvm: SCMP_ACT_NOTIFY needs a listener on this host, and the filtered "
                          "process runs in a guest kernel: not supported")
    return {"bpf": compiled["bpf"].hex(), "flags": compiled["flags"]}


def _process(proc, rows_cols=None, seccomp: dict | None = None, warn=lambda m: None) -> dict:
    u = proc.user
    out = {"args": list(proc.args), "env": api.process_env(proc), "cwd": proc.cwd or "/", "uid": u.uid, "gid": u.gid,
           "gids": list(u.additional_gids), "umask": u.umask, "tty": bool(proc.terminal),
           "caps": api.capability_plan(proc.capabilities, warn), "nnp": bool(proc.no_new_privileges),
           "seccomp": seccomp}
    if rows_cols:
        out["rows"], out["cols"] = rows_cols
    return out


def guest_mounts(spec, warn) -> tuple[list[dict], list[dict]]:
    """(mounts for the agent, virtio-fs shares): binds travel by virtio-fs, one share per
    host directory (a file bind shares its directory, seen only by the agent)."""
    shares: dict[str, str] = {}
    mounts = []
    for m in spec.mounts:
        opts = list(m.options)
        kind = m.type or ("bind" if "bind" in opts or "rbind" in opts else "")
        if kind == "bind" or "bind" in opts or "rbind" in opts:
            src = os.path.realpath(m.source)
            if not os.path.exists(src):
                raise api.RtError(f"config.json: $.mounts: bind source {m.source} does not exist")
            d, sub = (src, "") if os.path.isdir(src) else os.path.split(src)
            tag = shares.setdefault(d, f"rt{len(shares) + 1}")
            mounts.append({"destination": m.destination, "type": "bind", "share": tag, "sub": sub,
                           "options": opts})
        elif kind in FS_TYPES:
            mounts.append({"destination": m.destination, "type": kind, "source": m.source or kind,
                           "options": opts})
        else:
            warn(f"hypervisor_kvm: mount {m.destination} of type {kind!r} is not available in the guest; skipped")
    return mounts, [{"tag": t, "path": d} for d, t in shares.items()]


class VmBackend(api.Backend):
    name = "hypervisor_kvm"
    supports = frozenset({"stdio", "posix", "exec", "ps", "kill-all", "pause", "update", "terminal", "hooks"})  # checked by `rt conformance`

    def create(self, req: api.CreateRequest):
        from . import guest
        from .settings import decode
        vm = decode(req.spec.annotations)
        spec = req.spec
        if spec.process is None or not spec.process.args:
            raise api.RtError("config.json: $.process.args: the VM needs a process to run")
        accel, why = choose_accel(vm.accel)
        req.warn(f"hypervisor_kvm: accelerator {accel}: {why}")
        if spec.vm and spec.vm.image:
            return self._create_image(req, vm, accel)
        virtiofsd = find_virtiofsd()
        packed = rootfs_mode(vm.rootfs, virtiofsd, req.warn) == "initrd"
        qemu = (spec.vm.hypervisor.path if spec.vm and spec.vm.hypervisor else None) or "qemu-system-x86_64"
        if api.which(qemu) is None:
            raise api.RtError(f"hypervisor_kvm: {qemu} is missing (apt-get install qemu-system-x86)")
        kernel_src = spec.vm.kernel.path if spec.vm else guest.default_kernel()
        kernel = guest.vmlinux(kernel_src, req.warn)
        initrd = guest.initramfs(guest.kernel_version(kernel_src), req.warn)
        mounts, shares = guest_mounts(spec, req.warn)
        memory, cpus = _size(spec, vm)
        if packed:
            if shares:
                raise api.RtError("hypervisor_kvm: bind mounts need virtio-fs, and the rootfs is packed into the "
                                  "initrd (rt.vm.rootfs=initrd, or virtiofsd is missing)")
            initrd = guest.pack_rootfs(initrd, req.rootfs, os.path.join(req.state_dir, "initrd.cpio"), memory)
        append = "console=ttyS0 quiet panic=-1 reboot=t"
        if api.net_settings(spec.annotations) is not None:
            append += " rtnet=1"  # /init loads the NIC's modules only then
        if accel == "tcg":
            append += "".join(f" {a}" for a in guest.tcg_kernel_args())
        if spec.vm and spec.vm.kernel.parameters:
            append += " " + " ".join(spec.vm.kernel.parameters)
        plan = {
            "id": req.id, "qemu": qemu, "accel": accel, "cpu": guest.guest_cpu(accel), "kernel": kernel,
            "initrd": initrd, "append": append,
            "memory_mb": int(memory), "cpus": cpus, "virtiofsd": virtiofsd, "boot_timeout": vm.boot_timeout,
            "shares": ([] if packed else [{"tag": "rt0", "path": req.rootfs, "cache": vm.rootfs_cache}]) + shares, "stdin": True,
            "create": {"process": _process(spec.process, None, _guest_seccomp(spec, req.warn), req.warn),
                       "mounts": mounts, "packed": packed,
                       "shares": [s["tag"] for s in shares], "hostname": spec.hostname,
                       "readonly": bool(spec.root and spec.root.readonly), "net": None},
        }
        path, pid = self._launch(req, plan, "vmshim", terminal=bool(spec.process.terminal))
        return api.Created(pid, {"cgroup": path, "accel": accel})

    def _launch(self, req, plan: dict, module: str, terminal: bool = False) -> tuple[str, int]:
        """The cgroup, network, plan and shim, then prestart and createRuntime hooks on the
        host once the VM exists. On any failure nothing is left. Returns (cgroup, pid)."""
        if getattr(req, "systemd_cgroup", False):  # an older rt's request has no such field
            raise api.RtError("hypervisor_kvm: --systemd-cgroup is not supported yet (rt makes the VM's cgroup "
                              "itself; use the cgroupfs manager for VMs)")
        try:
            with api.claim_cgroup(req) as cg:  # never one with processes: those are someone else's
                self._network(req, plan)
                with open(os.path.join(req.state_dir, "vm.json"), "w") as f:
                    json.dump(plan, f)
                tty = self._terminal(req, plan) if terminal else None
                try:
                    pid = self._spawn_shim(req, cg, plan, module, stdio=tty)
                finally:
                    if tty is not None:
                        os.close(tty)
                if req.hooks:
                    req.hooks.create_runtime(pid)
        except BaseException:
            self._release_net(req.id, req.state_dir, req.extra)
            raise
        return cg.path, pid

    def _network(self, req, plan) -> None:
        net = api.net_settings(req.spec.annotations)
        if net is None:
            return
        link = api.attach_network(req, net, kind="tap", prefix="rtt")
        plan.update(tap=link["link"], mac=link["mac"])
        plan["create"]["net"] = {"ifname": link["ifname"], "mac": link["mac"], "address": str(link["address"]),
                                 "gateway": str(link["gateway"].ip)}

    @staticmethod
    def _release_net(cid: str, state_dir: str, extra: dict) -> None:
        api.release_network(os.path.dirname(state_dir), cid, extra.get("net"))

    def _create_image(self, req, vm, accel):
        """A whole OS from vm.image: firmware, the image's bootloader and kernel, no agent."""
        spec = req.spec
        image = spec.vm.image
        if not os.path.isfile(image.path):
            raise api.RtError(f"config.json: $.vm.image.path: {image.path} does not exist")
        if image.format not in QEMU_FORMATS:
            raise api.RtError(f"hypervisor_kvm: vm.image format {image.format!r} is not supported "
                              f"(use {', '.join(sorted(QEMU_FORMATS))})")
        if not any(os.path.exists(p) for p in SEABIOS):
            raise api.RtError("hypervisor_kvm: booting a disk image needs SeaBIOS (apt-get install seabios)")
        qemu = (spec.vm.hypervisor.path if spec.vm.hypervisor else None) or "qemu-system-x86_64"
        if api.which(qemu) is None:
            raise api.RtError(f"hypervisor_kvm: {qemu} is missing (apt-get install qemu-system-x86)")
        req.warn("hypervisor_kvm: booting vm.image with its own bootloader; vm.kernel and process.args are not used")
        memory, cpus = _size(spec, vm)
        req.save_extra(mode="image")
        from .guest import guest_cpu
        plan = {"id": req.id, "qemu": qemu, "accel": accel, "cpu": guest_cpu(accel), "image": image.path,
                "format": QEMU_FORMATS[image.format], "memory_mb": int(memory), "cpus": cpus,
                "boot_timeout": vm.boot_timeout, "stop_timeout": vm.stop_timeout, "ready": vm.ready,
                "stdin": True, "create": {}}
        # process.terminal: the serial console on a host pty (the guest's tty does the echo)
        path, pid = self._launch(req, plan, "imageshim", terminal=bool(spec.process.terminal))
        return api.Created(pid, {"cgroup": path, "accel": accel, "mode": "image"})

    @staticmethod
    def _terminal(req, plan) -> int:
        """process.terminal: a host pty whose master goes to --console-socket (as runc sends
        it); the slave becomes the shim's stdio, relayed to the guest pty of the process (or
        to the serial console of a disk image)."""
        from .execwait import _raw
        console = api.connect_console(req.console_socket, True)
        master, slave = os.openpty()
        try:
            size = api.console_size(req.spec.process)
            if size:
                import fcntl
                import termios
                fcntl.ioctl(master, termios.TIOCSWINSZ, size[0].to_bytes(2, "little") +
                            size[1].to_bytes(2, "little") + bytes(4))
                if "process" in plan["create"]:  # an image's serial console has no size to pass on
                    plan["create"]["process"]["rows"], plan["create"]["process"]["cols"] = size
            _raw(slave)
            import socket
            with socket.socket(fileno=console) as cs:
                socket.send_fds(cs, [b"/dev/ptmx"], [master])
        except BaseException:
            os.close(slave)
            raise
        finally:
            os.close(master)
        plan["tty"] = True
        with open(os.path.join(req.state_dir, "vm.json"), "w") as f:
            json.dump(plan, f)
        return slave

    @staticmethod
    def _spawn_shim(req, cg, plan: dict, module: str = "vmshim", stdio: int | None = None) -> int:
        r, w = os.pipe()
        gate_r, gate_w = os.pipe()  # the shim starts QEMU and virtiofsd only once it is in the cgroup
        os.set_inheritable(w, True)
        os.set_inheritable(gate_r, True)
        argv = shim_argv(module)
        try:
            fds = {w: w, gate_r: gate_r} | ({i: stdio for i in range(3)} if stdio else {})
            shim = api.spawn(argv[0], [*argv, req.state_dir, str(w), str(gate_r)], fds=fds, setsid=True)
            pid = shim.pid
        finally:
            os.close(w)
            os.close(gate_r)
        try:
            try:
                cg.join(pid)
                api.frames.send(gate_w, plan)  # the shim is waiting for it: it cannot fill the pipe
            except BrokenPipeError:
                pass  # the shim died: its missing report says so below
            finally:
                os.close(gate_w)  # on a failed join, EOF alone: the shim exits without booting
            import select
            import socket  # noqa: F401  (start's _call needs it: imported while the guest boots)
            data = b""
            while True:
                ready, _, _ = select.select([r], [], [], plan["boot_timeout"] + 60)
                if not ready:
                    raise api.RtError("hypervisor_kvm: the VM shim did not report")
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(r)
        try:
            if not data:
                reply = {"ok": False, "error": "the VM shim exited during create"}
            elif len(data) != 4 + int.from_bytes(data[:4], "big"):  # one whole frame, then EOF
                raise ValueError
            else:
                reply = api.frames.unpack(data[4:])
            if not isinstance(reply, dict):
                raise ValueError
        except (ValueError, EOFError, TypeError):
            reply = {"ok": False, "error": f"bad report from the VM shim: {data[:200]!r}"}
        if not reply.get("ok"):
            shim.wait()
            shim.close()
            raise api.RtError(f"hypervisor_kvm: {reply.get('error')}")
        shim.close()
        return pid

    def start(self, c) -> None:
        _call(c, {"op": "start"})
        try:
            os.unlink(os.path.join(c.dir, "exec.fifo"))
        except FileNotFoundError:
            pass

    def kill(self, c, sig: int, all: bool = False) -> None:
        if c.record.get("paused"):  # a stopped VM's agent cannot answer; the signal waits in the guest
            self.resume(c)
            c.record["paused"] = False
        try:
            _call(c, {"op": "signal", "sig": sig, "all": all}, timeout=10)
        except (api.RtError, OSError):
            if sig != 9:
                raise
            os.kill(c.pid, 9)  # the shim does not answer: its QEMU dies with it (PDEATHSIG)

    def pids(self, c) -> list[int]:
        path = c.extra.get("cgroup")
        return api.Cgroup(path).procs() if path else [c.pid]

    def pause(self, c) -> None:
        _call(c, {"op": "pause"})

    def resume(self, c) -> None:
        _call(c, {"op": "resume"})

    def update(self, c, resources: dict) -> None:
        """The cgroup around QEMU, virtiofsd and the shim takes cpu, pids and I/O limits at
        any time. A memory limit resizes the guest through its balloon: down from the size
        it booted with, and back up to it, never beyond."""
        mem = dict(resources.get("memory") or {})
        if any(mem.get(k) is not None for k in ("reservation", "swap")):
            raise api.RtError("update: hypervisor_kvm: memory.reservation and memory.swap do not apply to a "
                              "VM; memory.limit resizes its guest")
        if mem.get("limit") is not None:
            self._resize(c, mem.pop("limit"))
            resources = dict(resources, memory=mem)
        path = c.extra.get("cgroup")
        if not path:
            raise api.RtError("update: the container has no cgroup")
        try:
            problems = api.Cgroup(path).apply(resources)
        except ValueError as e:
            raise api.RtError(f"update: {e}")
        if problems:
            raise api.RtError(f"update: {problems[0]}")

    @staticmethod
    def _resize(c, limit: int) -> None:
        if c.extra.get("mode") == "image":
            raise api.RtError("update: memory.limit: a VM booted from a disk image has no balloon driver of ours")
        with open(os.path.join(c.dir, "vm.json")) as f:
            booted = json.load(f)["memory_mb"] << 20
        if not MIN_GUEST <= limit <= booted:
            raise api.RtError(f"update: memory.limit: {limit >> 20} MiB: the VM booted with {booted >> 20} MiB, "
                              f"and its balloon takes it from {MIN_GUEST >> 20} MiB up to that, not beyond")
        _call(c, {"op": "balloon"})
        _call(c, {"op": "memory", "bytes": limit})

    def delete(self, c) -> None:
        path = c.extra.get("cgroup")
        if path:
            cg = api.Cgroup(path)
            cg.kill_all()
            cg.destroy()
        self._release_net(c.id, c.dir, c.extra)

    def exec(self, c, req: dict) -> int:
        if c.extra.get("mode") == "image":
            raise api.RtError("exec: a VM booted from a disk image has no agent to run processes in; "
                              "use its console or its network")
        if req.get("cgroup"):
            raise api.RtError("exec: --cgroup: a VM's processes live in its guest, not in host cgroups")
        api.require_caller("the exec waiter is a fork of the caller's rt")
        from .execwait import spawn_waiter
        proc = req["process"]
        if not proc.args:
            raise api.RtError("exec: args must not be empty")
        console = api.connect_console(req.get("console_socket"), proc.terminal)
        from rt.spec import load_config
        with open(os.path.join(c.dir, "config.json"), "rb") as f:
            spec = load_config(f.read())  # the container's filter applies to exec too, as under runc
        return spawn_waiter(c.dir, _process(proc, api.console_size(proc), _guest_seccomp(spec)), console)
