"""msgspec models of the runtime-spec ``features`` document (features.md, features-linux.md).

Every field defaults to ``None``, which the spec defines as "unknown"; an empty
list is encoded and means "none supported".
"""

import msgspec


class Cgroup(msgspec.Struct, kw_only=True, omit_defaults=True):
    v1: bool | None = None
    v2: bool | None = None
    systemd: bool | None = None
    systemd_user: bool | None = msgspec.field(default=None, name="systemdUser")
    rdma: bool | None = None


class SeccompFeatures(msgspec.Struct, kw_only=True, omit_defaults=True):
    enabled: bool | None = None
    actions: list[str] | None = None
    operators: list[str] | None = None
    archs: list[str] | None = None
    known_flags: list[str] | None = msgspec.field(default=None, name="knownFlags")
    supported_flags: list[str] | None = msgspec.field(default=None, name="supportedFlags")


class Enabled(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Shape shared by apparmor, selinux, intelRdt and mountExtensions.idmap."""

    enabled: bool | None = None


class MountExtensions(msgspec.Struct, kw_only=True, omit_defaults=True):
    idmap: Enabled | None = None


class LinuxFeatures(msgspec.Struct, kw_only=True, omit_defaults=True):
    namespaces: list[str] | None = None
    capabilities: list[str] | None = None
    cgroup: Cgroup | None = None
    seccomp: SeccompFeatures | None = None
    apparmor: Enabled | None = None
    selinux: Enabled | None = None
    intel_rdt: Enabled | None = msgspec.field(default=None, name="intelRdt")
    mount_extensions: MountExtensions | None = msgspec.field(default=None, name="mountExtensions")


class Features(msgspec.Struct, kw_only=True, omit_defaults=True):
    oci_version_min: str | None = msgspec.field(default=None, name="ociVersionMin")
    oci_version_max: str | None = msgspec.field(default=None, name="ociVersionMax")
    hooks: list[str] | None = None
    mount_options: list[str] | None = msgspec.field(default=None, name="mountOptions")
    linux: LinuxFeatures | None = None
    annotations: dict[str, str] | None = None
    # Annotation names (or prefixes ending in ".") that may change security settings.
    potentially_unsafe_config_annotations: list[str] | None = msgspec.field(
        default=None, name="potentiallyUnsafeConfigAnnotations"
    )
