"""The hypervisor_kvm plugin hooks (entry point `rt.plugins`)."""
from rt.core.api import hookimpl

VERSION = "0.1.0"
RT_API = "1.1"  # the plugin API this is written against (rt.core.api.API_VERSION)


@hookimpl
def rt_register(registry):
    registry.add_backend("hypervisor_kvm", "rt.plugins.hypervisor_kvm.backend:VmBackend", version=VERSION,
                         summary="the workload in a QEMU/KVM virtual machine with its own kernel (Kata-class)")


@hookimpl
def rt_check_spec(spec, plugin):
    if plugin != "hypervisor_kvm":
        return
    from rt.core.api import RtError
    from .settings import decode
    decode(spec.annotations)
    h = spec.hooks
    if h and (h.create_container or h.start_container):
        raise RtError("config.json: $.hooks: createContainer and startContainer hooks run inside the "
                      "container's namespaces, which are a guest kernel's under hypervisor_kvm: not supported "
                      "(prestart, createRuntime, poststart and poststop run on the host)")
    for ns in (spec.linux.namespaces if spec.linux else []):
        if ns.path:  # a host namespace cannot be shared with a guest kernel
            raise RtError(f"config.json: $.linux.namespaces: hypervisor_kvm cannot join the host's {ns.type} "
                          f"namespace ({ns.path}): the workload runs under its own kernel")


@hookimpl
def rt_features(features):
    features.setdefault("potentiallyUnsafeConfigAnnotations", []).append("rt.vm.")


@hookimpl
def rt_bench_targets(bench):
    from .bench import targets
    for t in targets():
        bench.add(t)
