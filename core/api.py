"""The public plugin API. Plugins import from here and from rt.spec, nothing else of rt.

Heavy parts load on first use (PEP 562), so a backend imported by a short verb
(`state`, `kill`, `start`, `delete`) pulls in only what that verb needs.
"""
from .backend import Backend, Created, CreateRequest
from .errors import NeedsCaller, NotFound, NotSupported, RtError, require_caller

# The plugin API's version, "MAJOR.MINOR": a minor release only adds, a major one may break.
# A plugin module sets RT_API = "MAJOR.MINOR" (the version it was written against); rt loads
# it when the major is this one and the minor not newer. Without RT_API, "1.0" is assumed.
API_VERSION = "1.1"

__all__ = ["API_VERSION", "Backend", "OciBackend", "open_container", "backend_of", "parse_signal", "Created", "CreateRequest", "NotFound", "NotSupported", "RtError", "hookimpl",
           "Cgroup", "CgroupLayout", "claim_cgroup", "normalize_cgroup_path", "build_plan", "build_exec_plan", "device_rules", "capability_plan", "launch_shim", "release_barrier",
           "ShimFailed", "connect_console", "console_size", "Ipam", "IdRanges", "ensure_bridge", "add_veth", "add_tap",
           "delete_link", "attach_network", "release_network", "mac_for", "link_name", "net_settings", "annotation_settings", "convert_settings", "bench", "compile_seccomp", "stub_path", "frames", "build_c_helper", "sha256",
           "sealed_exec_helper", "spawn", "adopt_orphans", "require_caller", "NeedsCaller",
           "proc_start_time", "which", "process_env", "Plan", "ExecPlan", "MountPlan", "DevicePlan", "ProcessPlan", "CapsPlan"]

_LAZY = {
    "hookimpl": ("pluggy", None),
    "Cgroup": (".cgroups", "Cgroup"),
    "claim_cgroup": (".ocibackend", "CgroupClaim"),
    "CgroupLayout": (".cgroups", "Layout"),
    "normalize_cgroup_path": (".cgroups", "normalize_path"),
    "build_plan": (".plan", "build_plan"),
    "Plan": (".plantypes", "Plan"),  # the typed plan (API 1.1); docs/plan.md lists its fields
    "ExecPlan": (".plantypes", "ExecPlan"),
    "MountPlan": (".plantypes", "MountPlan"),
    "DevicePlan": (".plantypes", "DevicePlan"),
    "ProcessPlan": (".plantypes", "ProcessPlan"),
    "CapsPlan": (".plantypes", "CapsPlan"),
    "build_exec_plan": (".plan", "build_exec_plan"),
    "device_rules": (".plan", "device_rules"),
    "capability_plan": (".plan", "capability_plan"),
    "launch_shim": (".exechelper", "launch"),
    "sealed_exec_helper": (".exechelper", "sealed_fd"),
    "spawn": ("rt.shim.spawn", "spawn"),  # processes that outlive the verb: the caller's children
    "adopt_orphans": ("rt.shim.spawn", "adopt_orphans"),
    "ShimFailed": ("rt.shim.protocol", "ShimFailed"),
    "release_barrier": (".barrier", "release"),
    "connect_console": (".console", "connect"),
    "OciBackend": (".ocibackend", "OciBackend"),
    "open_container": (".store", "open_container"),
    "backend_of": (".verbs", "backend_of"),
    "parse_signal": (".signals", "parse_signal"),
    "proc_start_time": (".procfacts", "proc_start_time"),
    "which": (".procfacts", "which"),
    "process_env": (".plan", "process_env"),
    "Ipam": (".net", "Ipam"),
    "IdRanges": (".idranges", "IdRanges"),
    "ensure_bridge": (".net", "ensure_bridge"),
    "add_veth": (".net", "add_veth"),
    "add_tap": (".net", "add_tap"),
    "delete_link": (".net", "delete_link"),
    "attach_network": (".net", "attach"),
    "release_network": (".net", "release"),
    "mac_for": (".net", "mac_for"),
    "link_name": (".net", "link_name"),
    "console_size": (".console", "size_of"),
    "net_settings": (".netconf", "decode"),
    "annotation_settings": (".netconf", "settings"),
    "convert_settings": (".netconf", "convert"),
    "bench": (".bench.targets", None),
    "compile_seccomp": (".seccomp", "compile_filter"),
    "stub_path": ("rt.shim.launcher", "STUB_PATH"),
    "frames": ("rt.shim.frames", None),  # rt's frame for local pipes: send(fd, value), recv(fd)
    "build_c_helper": (".chelper", "build"),
    "sha256": (".chelper", "sha256"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(name)
    import importlib
    mod, attr = _LAZY[name]
    if name == "hookimpl":
        import pluggy
        value = pluggy.HookimplMarker("rt")
    elif attr is None:  # a whole module
        value = importlib.import_module(mod, __package__)
    else:
        value = getattr(importlib.import_module(mod, __package__), attr)
    globals()[name] = value
    return value
