"""The rt.net.* annotations, shared by every plugin that gives a container its own interface
(lxc_system's veth, hypervisor_kvm's tap), decoded and checked into one Struct."""
import msgspec

from .errors import RtError


class Net(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bridge: str = "rt0"
    subnet: str = "10.213.0.0/24"
    address: str | None = None  # a host address of subnet; by default the next free one
    ifname: str = "eth0"        # or "host0", as systemd-nspawn names it


def where(key: str) -> str:
    return f'config.json: $.annotations["{key}"]'


def settings(annotations: dict | None, prefix: str) -> dict:
    """{field: (annotation key, value)} of the annotations under `prefix` ("rt.net.")."""
    return {key[len(prefix):].replace("-", "_"): (key, value)
            for key, value in (annotations or {}).items() if key.startswith(prefix)}


def convert(kind, raw: dict, numbers: tuple = ()):
    """Build Struct `kind` from settings(); fields in `numbers` are parsed as floats."""
    fields = {f: v for f, (_, v) in raw.items()}
    for f, (key, v) in raw.items():
        if f not in kind.__struct_fields__:
            raise RtError(f"{where(key)}: unknown setting (expected one of {', '.join(kind.__struct_fields__)})")
        if f in numbers:
            try:
                fields[f] = float(v)
            except ValueError:
                raise RtError(f"{where(key)}: expected a number, got {v!r}")
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as e:
        raise RtError(f"config.json: $.annotations: {e}")


def decode(annotations: dict | None) -> Net | None:
    """rt.net.* -> Net, or None when no rt.net.* annotation is set."""
    raw = settings(annotations, "rt.net.")
    if not raw:
        return None
    net = convert(Net, raw)
    try:
        import ipaddress  # only with rt.net.*: 1 ms of every create otherwise
        subnet = ipaddress.ip_network(net.subnet, strict=True)
    except ValueError as e:
        raise RtError(f"{where('rt.net.subnet')}: {e}")
    if subnet.version != 4:
        raise RtError(f"{where('rt.net.subnet')}: only IPv4 subnets are supported")
    if not 0 < len(net.bridge) <= 15 or "/" in net.bridge:
        raise RtError(f"{where('rt.net.bridge')}: not a valid interface name")
    if net.ifname not in ("eth0", "host0"):
        raise RtError(f"{where('rt.net.ifname')}: expected eth0 or host0")
    return net
