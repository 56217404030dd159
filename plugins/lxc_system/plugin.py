"""The lxc_system plugin hooks (entry point `rt.plugins`)."""
from rt.core.api import hookimpl

VERSION = "0.1.0"
RT_API = "1.1"  # the plugin API this is written against (rt.core.api.API_VERSION)


@hookimpl
def rt_register(registry):
    registry.add_backend("lxc_system", "rt.plugins.lxc_system.backend:SystemBackend", version=VERSION,
                         summary="a whole userland with its own init, network and clean shutdown (LXC-class)")
    registry.add_verb("stop", "rt.plugins.lxc_system.verbs:stop",
                      help="stop a system container through its init: halt signal, timeout, then kill")
    registry.add_verb("reboot", "rt.plugins.lxc_system.verbs:reboot",
                      help="restart a system container: through its init when running, from its bundle when stopped")
    registry.add_verb("console", "rt.plugins.lxc_system.verbs:console",
                      help="attach to a system container's console (Ctrl-a q detaches)")


@hookimpl
def rt_check_spec(spec, plugin):
    if plugin != "lxc_system":
        return
    from .settings import decode
    net, _ = decode(spec.annotations)
    types = {ns.type for ns in (spec.linux.namespaces if spec.linux else [])}
    missing = {"pid", "mount", "uts"} - types  # a cgroup namespace is added when missing
    if missing:
        from rt.core.api import RtError
        raise RtError(f"config.json: $.linux.namespaces: a system container needs its own "
                      f"{', '.join(sorted(missing))} namespace(s)")
    if net is not None and "network" not in types:
        from rt.core.api import RtError
        raise RtError("config.json: $.linux.namespaces: rt.net.* needs a network namespace")


@hookimpl
def rt_features(features):
    features.setdefault("potentiallyUnsafeConfigAnnotations", []).append("rt.system.")


@hookimpl
def rt_bench_targets(bench):
    from .bench import targets
    for t in targets():
        bench.add(t)
