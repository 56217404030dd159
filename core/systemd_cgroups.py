"""The systemd cgroup driver (`--systemd-cgroup`): each container gets a transient scope
that systemd makes and owns, asked for over D-Bus (jeepney), as runc's systemd driver does.

linux.cgroupsPath is "slice:prefix:name": the unit is prefix-name.scope in the slice (a
name ending in .slice is a slice unit itself). The scope starts with the shim's pid in it,
Delegate=yes, and the resources that systemd knows as unit properties; rt then writes every
resource into the delegated cgroup (and adds what systemd has no property for), so the
limits are the same as with the cgroupfs driver. Device rules are not handed to systemd:
its DeviceAllow= can name only devices with a /dev node or a /proc/devices name, and its
program and rt's eBPF program must both allow an access, so a lossy translation would
deny what the spec allows. rt's own program in the scope's cgroup enforces them.
"""
import os

SD = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1", "org.freedesktop.systemd1.Manager")
INFINITY = 2**64 - 1
TIMEOUT = 30.0


class SystemdError(Exception):
    pass


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
    if name.endswith(".slice"):
        return sl, name
    return sl, f"{prefix}-{name}.scope" if prefix else f"{name}.scope"


def _bitmask(cpus: str) -> bytes:
    """A cpuset list ("0-3,7") as systemd's AllowedCPUs byte array (bit n = cpu n)."""
    bits = 0
    for part in cpus.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        for n in range(int(lo), int(hi or lo) + 1):
            bits |= 1 << n
    return bits.to_bytes(max(1, (bits.bit_length() + 7) // 8), "little")


def properties(res: dict | None) -> list[tuple[str, tuple[str, object]]]:
    """OCI linux.resources as the unit properties systemd has for them (cgroup v2 names)."""
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
    if pids.get("limit") is not None:
        t("TasksMax", -1 if pids["limit"] <= 0 else pids["limit"])
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
    return out


class Systemd:
    """One D-Bus connection to the system's (or with user=True the caller's) systemd."""

    def __init__(self, user: bool = False):
        try:
            from jeepney import DBusAddress
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            raise SystemdError("the systemd cgroup driver needs the jeepney package") from None
        self.user = user
        try:
            self.conn = open_dbus_connection(bus="SESSION" if user else "SYSTEM")
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

    def _job(self, method: str, sig: str, *args) -> None:
        """Call a method that queues a job, and wait until the job is done."""
        import time
        from jeepney import MatchRule, message_bus
        # no sender=: the bus resolves a well-known name, but the signal's header (which the local
        # filter matches) carries systemd's unique name
        rule = MatchRule(type="signal", interface=SD[2], member="JobRemoved", path=SD[0])
        self.conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=TIMEOUT)
        self._call("Subscribe", "")
        with self.conn.filter(rule) as queue:
            job = self._call(method, sig, *args)[0]
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

    def start(self, unit: str, slice_: str, pid: int, resources: dict | None, description: str) -> str:
        """Start the transient unit with `pid` in it; returns its cgroup path."""
        props = [("Description", ("s", description)), ("Slice", ("s", slice_)), ("Delegate", ("b", True)),
                 ("DefaultDependencies", ("b", False))]
        if unit.endswith(".scope"):
            props.append(("PIDs", ("au", [pid])))
        props += [(f"{k}Accounting", ("b", True)) for k in ("Memory", "CPU", "IO", "Tasks")]
        props += properties(resources)
        self._job("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "replace", props, [])
        return self.control_group(unit)

    def control_group(self, unit: str) -> str:
        from jeepney import DBusAddress, Properties
        path = self._call("GetUnit", "s", unit)[0]
        kind = "Slice" if unit.endswith(".slice") else "Scope"  # ControlGroup is a property of the unit type
        props = Properties(DBusAddress(path, bus_name=SD[1], interface=f"org.freedesktop.systemd1.{kind}"))
        from jeepney.wrappers import unwrap_msg
        try:
            sig_value = unwrap_msg(self.conn.send_and_get_reply(props.get("ControlGroup"), timeout=TIMEOUT))[0]
        except Exception as e:
            raise SystemdError(f"systemd: the cgroup of {unit}: {e}") from None
        return sig_value[1]

    def set(self, unit: str, resources: dict | None) -> None:
        props = properties(resources)
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
