"""The rt.vm.* annotations, decoded and checked into a Struct."""
import msgspec

from rt.core import api


class Vm(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    accel: str = "auto"         # auto: KVM when it is usable, else TCG; or kvm / tcg to force one
    boot_timeout: float = 90.0  # seconds until the agent must answer (TCG on a busy host is slow)
    memory: float = 0           # MiB; default: linux.resources.memory.limit, else 256
    cpus: float = 0             # default: from the cpu quota, else 1
    rootfs: str = "auto"        # virtiofs, initrd (a packed copy; small rootfs only), auto: virtiofs if there
    rootfs_cache: str = "always"  # virtiofsd's cache for the rootfs: always, auto (1 s coherence) or never
    ready: str = ""             # vm.image: a regex on the console; `start` waits for it
    stop_timeout: float = 30.0  # vm.image: seconds after the power button before QEMU is quit


def decode(annotations: dict | None) -> Vm:
    raw = api.annotation_settings(annotations, "rt.vm.")
    vm = api.convert_settings(Vm, raw, numbers=("boot_timeout", "memory", "cpus", "stop_timeout"))
    where = 'config.json: $.annotations["rt.vm.{}"]'
    if vm.accel not in ("auto", "kvm", "tcg"):
        raise api.RtError(f"{where.format('accel')}: expected auto, kvm or tcg, got {vm.accel!r}")
    if vm.rootfs not in ("auto", "virtiofs", "initrd"):
        raise api.RtError(f"{where.format('rootfs')}: expected auto, virtiofs or initrd, got {vm.rootfs!r}")
    if vm.rootfs_cache not in ("always", "auto", "never"):
        raise api.RtError(f"{where.format('rootfs_cache')}: expected always, auto or never, got {vm.rootfs_cache!r}")
    if vm.boot_timeout <= 0:
        raise api.RtError(f"{where.format('boot_timeout')}: must be positive")
    if vm.stop_timeout <= 0:
        raise api.RtError(f"{where.format('stop_timeout')}: must be positive")
    if vm.ready:
        import re
        try:
            re.compile(vm.ready)
        except re.error as e:
            raise api.RtError(f"{where.format('ready')}: not a regular expression: {e}")
    if vm.memory and vm.memory < 64:
        raise api.RtError(f"{where.format('memory')}: at least 64 MiB, got {vm.memory:g}")
    if vm.cpus < 0 or vm.cpus != int(vm.cpus):
        raise api.RtError(f"{where.format('cpus')}: expected a whole number of vCPUs")
    return vm
