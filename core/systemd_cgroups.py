"""The systemd cgroup driver (`--systemd-cgroup`): each container gets a transient scope
that systemd makes and owns, asked for over D-Bus (jeepney), as runc's systemd driver does.

linux.cgroupsPath is "slice:prefix:name": the unit is prefix-name.scope in the slice (never
a slice unit, which runc makes for a name ending in .slice). It starts with the shim's pid
in it, Delegate=yes, and the resources that systemd knows as unit properties; rt then
writes every resource into the delegated cgroup (and what systemd has no property for),
so the limits are the same as with the cgroupfs driver. Pure cgroup v2 only: there,
systemd leaves device programs it did not attach alone, and rt's own eBPF program
enforces the device rules (docs/decisions.md); on v1, systemd rewrites devices.allow.
"""
import os

SD = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1", "org.freedesktop.systemd1.Manager")
INFINITY = 2**64 - 1
MAX_CPUS = 8192  # the kernel's largest NR_CPUS
TIMEOUT = 30.0


class SystemdError(Exception):
    pass


def _outer_uid() -> int:
    """Our uid outside any user namespace we run in (podman's rootless one maps us to 0)."""
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, outside, _count = line.split()
                if int(inside) <= os.getuid() < int(inside) + int(_count):
                    return int(outside) + os.getuid() - int(inside)
    except (OSError, ValueError):
        pass
    return os.getuid()


def booted() -> bool:
    """sd_booted(): systemd is PID 1."""
    return os.path.isdir("/run/systemd/system")


def unit_of(cgroups_path: str | None, cid: str) -> tuple[str, str]:
    """(slice, unit) for linux.cgroupsPath under the systemd driver (runc's rules)."""
    if not cgroups_path:
        return "system.slice", f"rt-{cid}.scope"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ValueError(f'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, '
                         f'got "{cgroups_path}" instead')
    sl, prefix, name = parts
    for what, v in (("slice", sl), ("prefix", prefix), ("name", name)):
        if "/" in v or v in (".", ".."):
            raise ValueError(f"cgroupsPath {cgroups_path!r}: the {what} cannot hold a path")
    if not name:
        raise ValueError(f"cgroupsPath {cgroups_path!r}: the unit name is empty")
    sl = sl or "system.slice"
    if not sl.endswith(".slice"):
        raise ValueError(f"cgroupsPath {cgroups_path!r}: {sl!r} is not a slice")
    if name.endswith(".slice"):  # runc would make a slice unit; rt runs each container in a scope
        raise ValueError(f"cgroupsPath {cgroups_path!r}: a container's unit is a scope, not the slice {name!r}")
    return sl, f"{prefix}-{name}.scope" if prefix else f"{name}.scope"


def _bitmask(cpus: str) -> bytes:
    """A cpuset list ("0-3,7") as systemd's AllowedCPUs byte array (bit n = cpu n)."""
    bits = 0
    for part in cpus.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if not 0 <= lo <= hi < MAX_CPUS:
            raise ValueError(f"cpuset {cpus!r}: {part!r} is not a range of cpus or nodes below {MAX_CPUS}")
        bits |= ((1 << (hi - lo + 1)) - 1) << lo
    return bits.to_bytes(max(1, (bits.bit_length() + 7) // 8), "little")


def properties(res: dict | None, start: bool = False) -> list[tuple[str, tuple[str, object]]]:
    """OCI linux.resources as the unit properties systemd has for them (cgroup v2 names); at
    start, also the defaults that differ from the cgroupfs driver's."""
    from .cgroups import blkio_to_io_weight, shares_to_weight, swap_v2
    res = res or {}
    mem, cpu, pids, bio = (res.get(k) or {} for k in ("memory", "cpu", "pids", "blockIO"))
    out: list[tuple[str, tuple[str, object]]] = []

    def t(name, value):
        out.append((name, ("t", INFINITY if value is None or value < 0 else int(value))))
    if mem.get("limit") is not None:
        t("MemoryMax", mem["limit"])
    if mem.get("reservation") is not None:
        t("MemoryLow", mem["reservation"])
    if mem.get("swap") is not None:
        swap = swap_v2(mem["swap"], mem.get("limit"))
        t("MemorySwapMax", -1 if swap == "max" else swap)
    if pids.get("limit") is not None or start:  # unset at start: "infinity", not DefaultTasksMax
        t("TasksMax", -1 if pids.get("limit") is None or pids["limit"] <= 0 else pids["limit"])
    if cpu.get("shares"):
        t("CPUWeight", shares_to_weight(cpu["shares"]))
    if cpu.get("quota") is not None and cpu["quota"] > 0:
        period = cpu.get("period") or 100000
        per_sec = cpu["quota"] * 1_000_000 // period
        per_sec += -per_sec % 10000  # systemd keeps it in 10 ms steps: round up, as runc
        t("CPUQuotaPerSecUSec", per_sec)
        t("CPUQuotaPeriodUSec", period)
    if cpu.get("cpus"):
        out.append(("AllowedCPUs", ("ay", _bitmask(cpu["cpus"]))))
    if cpu.get("mems"):
        out.append(("AllowedMemoryNodes", ("ay", _bitmask(cpu["mems"]))))
    if bio.get("weight"):
        t("IOWeight", blkio_to_io_weight(bio["weight"]))
    # linux.resources.unified: the files systemd also writes, so that a reload keeps them
    # (others it leaves alone; rt writes them into the delegated cgroup as well)
    for key, value in (res.get("unified") or {}).items():
        if key not in UNIFIED:
            continue
        name = UNIFIED[key]
        v = str(value).strip().removeprefix("default ")
        if not (v == "max" or v.isdigit() or key == "cpu.max"):
            continue  # a form systemd has no property for ("8:0 100"): the file only
        if key == "cpu.max":
            quota, _, period = v.partition(" ")
            period_us = int(period or 100000)
            out = [p for p in out if p[0] not in ("CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec")]
            if quota != "max":
                per_sec = int(quota) * 1_000_000 // period_us
                t("CPUQuotaPerSecUSec", per_sec + -per_sec % 10000)
            t("CPUQuotaPeriodUSec", period_us)
        else:
            out = [p for p in out if p[0] != name]
            t(name, -1 if v == "max" else int(v))
    return out


UNIFIED = {"memory.max": "MemoryMax", "memory.high": "MemoryHigh", "memory.low": "MemoryLow",
           "memory.min": "MemoryMin", "memory.swap.max": "MemorySwapMax", "pids.max": "TasksMax",
           "cpu.weight": "CPUWeight", "io.weight": "IOWeight", "cpu.max": None}


def _connect(bus: str):
    """A D-Bus connection, authenticated as our uid outside any user namespace: the bus sees
    that uid (SO_PEERCRED), while jeepney would claim the namespace's (0 under rootless podman)."""
    import socket
    from jeepney.bus import get_bus
    from jeepney.io.blocking import DBusConnection
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(5)
        sock.connect(get_bus(bus))
        sock.sendall(b"\0AUTH EXTERNAL " + str(_outer_uid()).encode().hex().encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        if not reply.startswith(b"OK "):
            raise ValueError(f"the bus refused us: {reply.strip().decode(errors='replace')}")
        sock.sendall(b"BEGIN\r\n")
        sock.settimeout(None)
        return DBusConnection(sock)
    except BaseException:
        sock.close()
        raise


class Systemd:
    """One D-Bus connection to the system's (or with user=True the caller's) systemd."""

    def __init__(self, user: bool = False):
        try:
            from jeepney import DBusAddress
        except ImportError:
            raise SystemdError("the systemd cgroup driver needs the jeepney package") from None
        self.user = user
        bus = "SYSTEM"
        if user:  # the user's own bus; a rootless caller under podman may lack the variable
            bus = os.environ.get("DBUS_SESSION_BUS_ADDRESS") or \
                f"unix:path={os.environ.get('XDG_RUNTIME_DIR') or f'/run/user/{_outer_uid()}'}/bus"
        try:
            self.conn = _connect(bus)
        except (OSError, KeyError, ValueError) as e:
            raise SystemdError(f"cannot connect to the {'user' if user else 'system'} D-Bus for systemd: {e}") from None
        self.addr = DBusAddress(SD[0], bus_name=SD[1], interface=SD[2])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method: str, sig: str, *args):
        from jeepney import DBusErrorResponse, new_method_call
        from jeepney.wrappers import unwrap_msg
        try:
            return unwrap_msg(self.conn.send_and_get_reply(new_method_call(self.addr, method, sig, args),
                                                           timeout=TIMEOUT))
        except DBusErrorResponse as e:
            detail = e.data[0] if e.data else e.name
            raise SystemdError(f"systemd {method}: {detail}") from None
        except TimeoutError:
            raise SystemdError(f"systemd {method}: no answer in {TIMEOUT:.0f} s") from None

    def _job(self, method: str, sig: str, *args, queued=None) -> None:
        """Call a method that queues a job, and wait until the job is done (queued(): it was)."""
        import time
        from jeepney import MatchRule, message_bus
        # only systemd's own JobRemoved: anyone on the bus may broadcast one. The header (which
        # the local filter matches) carries systemd's unique name, not the well-known one.
        from jeepney.wrappers import unwrap_msg
        owner = unwrap_msg(self.conn.send_and_get_reply(message_bus.GetNameOwner(SD[1]), timeout=TIMEOUT))[0]
        rule = MatchRule(type="signal", sender=owner, interface=SD[2], member="JobRemoved", path=SD[0])
        self.conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=TIMEOUT)
        self._call("Subscribe", "")
        with self.conn.filter(rule) as queue:
            job = self._call(method, sig, *args)[0]
            if queued:
                queued()
            deadline = time.monotonic() + TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemdError(f"systemd {method} {args[0]}: the job did not finish in {TIMEOUT:.0f} s")
                try:
                    _id, path, unit, result = self.conn.recv_until_filtered(queue, timeout=left).body
                except TimeoutError:
                    continue
                if path == job:
                    break
        if result != "done":
            raise SystemdError(f"systemd {method} {args[0]}: the job ended as {result!r}")

    def start(self, unit: str, slice_: str, pid: int, resources: dict | None, description: str,
              queued=None) -> str:
        """Start the transient scope with `pid` in it; returns its cgroup path. queued() runs
        once systemd has taken the job: from then on the unit is ours to stop."""
        try:
            props = [("Description", ("s", description)), ("Slice", ("s", slice_)), ("Delegate", ("b", True)),
                     ("DefaultDependencies", ("b", False)), ("PIDs", ("au", [pid]))]
            props += [(f"{k}Accounting", ("b", True)) for k in ("Memory", "CPU", "IO", "Tasks")]
            props += properties(resources, start=True)
        except ValueError as e:
            raise SystemdError(f"linux.resources: {e}") from None
        self._job("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "replace", props, [], queued=queued)
        return self.control_group(unit)

    def invocation(self, unit: str) -> str | None:
        """The unit's InvocationID (hex): which run of a unit of that name this is; None if none."""
        from jeepney import DBusAddress, Properties
        from jeepney.wrappers import unwrap_msg
        try:
            path = self._call("GetUnit", "s", unit)[0]
        except SystemdError:
            return None
        props = Properties(DBusAddress(path, bus_name=SD[1], interface="org.freedesktop.systemd1.Unit"))
        try:
            return bytes(unwrap_msg(self.conn.send_and_get_reply(props.get("InvocationID"),
                                                                 timeout=TIMEOUT))[0][1]).hex() or None
        except Exception as e:
            raise SystemdError(f"systemd: the invocation of {unit}: {e}") from None

    def manager_cgroup(self) -> str:
        """The cgroup of this systemd instance (a user's: .../user@UID.service)."""
        from jeepney import Properties
        from jeepney.wrappers import unwrap_msg
        try:
            return unwrap_msg(self.conn.send_and_get_reply(Properties(self.addr).get("ControlGroup"),
                                                           timeout=TIMEOUT))[0][1]
        except Exception as e:
            raise SystemdError(f"systemd: its own cgroup: {e}") from None

    def control_group(self, unit: str) -> str:
        from jeepney import DBusAddress, Properties
        path = self._call("GetUnit", "s", unit)[0]
        props = Properties(DBusAddress(path, bus_name=SD[1], interface="org.freedesktop.systemd1.Scope"))
        from jeepney.wrappers import unwrap_msg
        try:
            sig_value = unwrap_msg(self.conn.send_and_get_reply(props.get("ControlGroup"), timeout=TIMEOUT))[0]
        except Exception as e:
            raise SystemdError(f"systemd: the cgroup of {unit}: {e}") from None
        return sig_value[1]

    def set(self, unit: str, resources: dict | None) -> None:
        try:
            props = properties(resources)
        except ValueError as e:
            raise SystemdError(f"linux.resources: {e}") from None
        if props:
            self._call("SetUnitProperties", "sba(sv)", unit, True, props)

    def stop(self, unit: str) -> None:
        """Stop the unit and forget it; a unit that is gone already is fine."""
        try:
            self._job("StopUnit", "ss", unit, "replace")
        except SystemdError as e:
            if "not loaded" not in str(e) and "NoSuchUnit" not in str(e):
                raise
        try:
            self._call("ResetFailedUnit", "s", unit)
        except SystemdError:
            pass
