"""msgspec models of the OCI runtime-spec 1.2 ``config.json`` (Linux and VM parts).

Defaults mirror the Go bindings (specs-go/config.go) so that a config written by
runc/containerd re-encodes to the same JSON:

* Go pointer fields (``*int64``, ``*bool``, nested ``*Struct``) default to ``None``,
  so an explicit ``0``/``false`` survives a round trip;
* Go ``omitempty`` values default to their zero value (``""``, ``False``, empty
  list or dict) and are omitted again on encode;
* fields the spec marks REQUIRED have no default.

Unknown JSON properties are ignored, as the spec requires. The solaris, windows
and zos sections are not modelled and are therefore dropped.
"""

from typing import Annotated

import msgspec

# Integer widths used by the spec. uint64 cannot carry its upper bound in
# msgspec.Meta (it must fit an int64), so validate() checks that bound.
U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
U64 = Annotated[int, msgspec.Meta(ge=0)]
I32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Root(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    readonly: bool = False


class IDMapping(msgspec.Struct, kw_only=True, omit_defaults=True):
    container_id: U32 = msgspec.field(name="containerID")
    host_id: U32 = msgspec.field(name="hostID")
    size: U32


class Mount(msgspec.Struct, kw_only=True, omit_defaults=True):
    destination: str
    type: str = ""
    source: str = ""
    options: list[str] = msgspec.field(default_factory=list)
    # Per-mount mappings for idmapped mounts.
    uid_mappings: list[IDMapping] = msgspec.field(default_factory=list, name="uidMappings")
    gid_mappings: list[IDMapping] = msgspec.field(default_factory=list, name="gidMappings")


class Box(msgspec.Struct, kw_only=True, omit_defaults=True):
    height: U32
    width: U32


class User(msgspec.Struct, kw_only=True, omit_defaults=True):
    uid: U32
    gid: U32
    umask: U32 | None = None
    additional_gids: list[U32] = msgspec.field(default_factory=list, name="additionalGids")
    username: str = ""  # Windows only


class Capabilities(msgspec.Struct, kw_only=True, omit_defaults=True):
    bounding: list[str] = msgspec.field(default_factory=list)
    effective: list[str] = msgspec.field(default_factory=list)
    inheritable: list[str] = msgspec.field(default_factory=list)
    permitted: list[str] = msgspec.field(default_factory=list)
    ambient: list[str] = msgspec.field(default_factory=list)


class Rlimit(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    hard: U64
    soft: U64


class Scheduler(msgspec.Struct, kw_only=True, omit_defaults=True):
    policy: str
    nice: I32 = 0
    priority: I32 = 0
    flags: list[str] = msgspec.field(default_factory=list)
    # SCHED_DEADLINE parameters, in nanoseconds.
    runtime: U64 = 0
    deadline: U64 = 0
    period: U64 = 0


class IOPriority(msgspec.Struct, kw_only=True, omit_defaults=True):
    class_: str = msgspec.field(name="class")
    priority: I64


class ExecCPUAffinity(msgspec.Struct, kw_only=True, omit_defaults=True):
    initial: str = ""
    final: str = ""


class Process(msgspec.Struct, kw_only=True, omit_defaults=True):
    terminal: bool = False
    console_size: Box | None = msgspec.field(default=None, name="consoleSize")
    user: User
    args: list[str] = msgspec.field(default_factory=list)
    command_line: str = msgspec.field(default="", name="commandLine")  # Windows only
    env: list[str] = msgspec.field(default_factory=list)
    cwd: str
    capabilities: Capabilities | None = None
    rlimits: list[Rlimit] = msgspec.field(default_factory=list)
    no_new_privileges: bool = msgspec.field(default=False, name="noNewPrivileges")
    apparmor_profile: str = msgspec.field(default="", name="apparmorProfile")
    oom_score_adj: I64 | None = msgspec.field(default=None, name="oomScoreAdj")
    scheduler: Scheduler | None = None
    selinux_label: str = msgspec.field(default="", name="selinuxLabel")
    io_priority: IOPriority | None = msgspec.field(default=None, name="ioPriority")
    exec_cpu_affinity: ExecCPUAffinity | None = msgspec.field(default=None, name="execCPUAffinity")


class Hook(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    args: list[str] = msgspec.field(default_factory=list)
    env: list[str] = msgspec.field(default_factory=list)
    timeout: I64 | None = None


class Hooks(msgspec.Struct, kw_only=True, omit_defaults=True):
    prestart: list[Hook] = msgspec.field(default_factory=list)  # deprecated
    create_runtime: list[Hook] = msgspec.field(default_factory=list, name="createRuntime")
    create_container: list[Hook] = msgspec.field(default_factory=list, name="createContainer")
    start_container: list[Hook] = msgspec.field(default_factory=list, name="startContainer")
    poststart: list[Hook] = msgspec.field(default_factory=list)
    poststop: list[Hook] = msgspec.field(default_factory=list)


class Namespace(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    path: str = ""


class TimeOffset(msgspec.Struct, kw_only=True, omit_defaults=True):
    secs: I64 = 0
    nanosecs: U32 = 0


class Device(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    type: str
    # Required unless type is "p"; None keeps an explicit 0 on re-encode.
    major: I64 | None = None
    minor: I64 | None = None
    file_mode: U32 | None = msgspec.field(default=None, name="fileMode")
    uid: U32 | None = None
    gid: U32 | None = None


class DeviceCgroup(msgspec.Struct, kw_only=True, omit_defaults=True):
    allow: bool
    type: str = ""
    major: I64 | None = None
    minor: I64 | None = None
    access: str = ""


class Memory(msgspec.Struct, kw_only=True, omit_defaults=True):
    limit: I64 | None = None
    reservation: I64 | None = None
    swap: I64 | None = None
    kernel: I64 | None = None  # deprecated
    kernel_tcp: I64 | None = msgspec.field(default=None, name="kernelTCP")  # deprecated
    swappiness: U64 | None = None
    disable_oom_killer: bool | None = msgspec.field(default=None, name="disableOOMKiller")
    use_hierarchy: bool | None = msgspec.field(default=None, name="useHierarchy")
    check_before_update: bool | None = msgspec.field(default=None, name="checkBeforeUpdate")


class CPU(msgspec.Struct, kw_only=True, omit_defaults=True):
    shares: U64 | None = None
    quota: I64 | None = None
    burst: U64 | None = None
    period: U64 | None = None
    realtime_runtime: I64 | None = msgspec.field(default=None, name="realtimeRuntime")
    realtime_period: U64 | None = msgspec.field(default=None, name="realtimePeriod")
    cpus: str = ""
    mems: str = ""
    idle: I64 | None = None


class Pids(msgspec.Struct, kw_only=True, omit_defaults=True):
    limit: I64


class WeightDevice(msgspec.Struct, kw_only=True, omit_defaults=True):
    major: I64
    minor: I64
    weight: U16 | None = None
    leaf_weight: U16 | None = msgspec.field(default=None, name="leafWeight")


class ThrottleDevice(msgspec.Struct, kw_only=True, omit_defaults=True):
    major: I64
    minor: I64
    rate: U64


class BlockIO(msgspec.Struct, kw_only=True, omit_defaults=True):
    weight: U16 | None = None
    leaf_weight: U16 | None = msgspec.field(default=None, name="leafWeight")
    weight_device: list[WeightDevice] = msgspec.field(default_factory=list, name="weightDevice")
    throttle_read_bps_device: list[ThrottleDevice] = msgspec.field(
        default_factory=list, name="throttleReadBpsDevice"
    )
    throttle_write_bps_device: list[ThrottleDevice] = msgspec.field(
        default_factory=list, name="throttleWriteBpsDevice"
    )
    throttle_read_iops_device: list[ThrottleDevice] = msgspec.field(
        default_factory=list, name="throttleReadIOPSDevice"
    )
    throttle_write_iops_device: list[ThrottleDevice] = msgspec.field(
        default_factory=list, name="throttleWriteIOPSDevice"
    )


class HugepageLimit(msgspec.Struct, kw_only=True, omit_defaults=True):
    page_size: str = msgspec.field(name="pageSize")
    limit: U64


class InterfacePriority(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    priority: U32


class Network(msgspec.Struct, kw_only=True, omit_defaults=True):
    class_id: U32 | None = msgspec.field(default=None, name="classID")
    priorities: list[InterfacePriority] = msgspec.field(default_factory=list)


class Rdma(msgspec.Struct, kw_only=True, omit_defaults=True):
    hca_handles: U32 | None = msgspec.field(default=None, name="hcaHandles")
    hca_objects: U32 | None = msgspec.field(default=None, name="hcaObjects")


class Resources(msgspec.Struct, kw_only=True, omit_defaults=True):
    devices: list[DeviceCgroup] = msgspec.field(default_factory=list)
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    block_io: BlockIO | None = msgspec.field(default=None, name="blockIO")
    hugepage_limits: list[HugepageLimit] = msgspec.field(default_factory=list, name="hugepageLimits")
    network: Network | None = None
    rdma: dict[str, Rdma] = msgspec.field(default_factory=dict)
    unified: dict[str, str] = msgspec.field(default_factory=dict)


class SeccompArg(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: U32
    value: U64
    value_two: U64 = msgspec.field(default=0, name="valueTwo")
    op: str


class Syscall(msgspec.Struct, kw_only=True, omit_defaults=True):
    names: list[str]
    action: str
    errno_ret: U32 | None = msgspec.field(default=None, name="errnoRet")
    args: list[SeccompArg] = msgspec.field(default_factory=list)


class Seccomp(msgspec.Struct, kw_only=True, omit_defaults=True):
    default_action: str = msgspec.field(name="defaultAction")
    default_errno_ret: U32 | None = msgspec.field(default=None, name="defaultErrnoRet")
    architectures: list[str] = msgspec.field(default_factory=list)
    flags: list[str] = msgspec.field(default_factory=list)
    listener_path: str = msgspec.field(default="", name="listenerPath")
    listener_metadata: str = msgspec.field(default="", name="listenerMetadata")
    syscalls: list[Syscall] = msgspec.field(default_factory=list)


class IntelRdt(msgspec.Struct, kw_only=True, omit_defaults=True):
    clos_id: str = msgspec.field(default="", name="closID")
    schemata: str = ""
    l3_cache_schema: str = msgspec.field(default="", name="l3CacheSchema")
    mem_bw_schema: str = msgspec.field(default="", name="memBwSchema")
    enable_cmt: bool = msgspec.field(default=False, name="enableCMT")
    enable_mbm: bool = msgspec.field(default=False, name="enableMBM")


class Personality(msgspec.Struct, kw_only=True, omit_defaults=True):
    domain: str
    flags: list[str] = msgspec.field(default_factory=list)


class Linux(msgspec.Struct, kw_only=True, omit_defaults=True):
    uid_mappings: list[IDMapping] = msgspec.field(default_factory=list, name="uidMappings")
    gid_mappings: list[IDMapping] = msgspec.field(default_factory=list, name="gidMappings")
    sysctl: dict[str, str] = msgspec.field(default_factory=dict)
    resources: Resources | None = None
    cgroups_path: str = msgspec.field(default="", name="cgroupsPath")
    namespaces: list[Namespace] = msgspec.field(default_factory=list)
    devices: list[Device] = msgspec.field(default_factory=list)
    seccomp: Seccomp | None = None
    rootfs_propagation: str = msgspec.field(default="", name="rootfsPropagation")
    masked_paths: list[str] = msgspec.field(default_factory=list, name="maskedPaths")
    readonly_paths: list[str] = msgspec.field(default_factory=list, name="readonlyPaths")
    mount_label: str = msgspec.field(default="", name="mountLabel")
    intel_rdt: IntelRdt | None = msgspec.field(default=None, name="intelRdt")
    personality: Personality | None = None
    time_offsets: dict[str, TimeOffset] = msgspec.field(default_factory=dict, name="timeOffsets")


class VMHypervisor(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    parameters: list[str] = msgspec.field(default_factory=list)


class VMKernel(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    parameters: list[str] = msgspec.field(default_factory=list)
    initrd: str = ""


class VMImage(msgspec.Struct, kw_only=True, omit_defaults=True):
    path: str
    format: str


class VM(msgspec.Struct, kw_only=True, omit_defaults=True):
    hypervisor: VMHypervisor | None = None
    kernel: VMKernel
    image: VMImage | None = None


class Spec(msgspec.Struct, kw_only=True, omit_defaults=True):
    oci_version: str = msgspec.field(name="ociVersion")
    process: Process | None = None
    root: Root | None = None
    hostname: str = ""
    domainname: str = ""
    mounts: list[Mount] = msgspec.field(default_factory=list)
    hooks: Hooks | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    linux: Linux | None = None
    vm: VM | None = None
