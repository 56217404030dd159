"""The app_single plugin hooks (entry point `rt.plugins`)."""
from rt.core.api import hookimpl

VERSION = "0.1.0"
RT_API = "1.1"  # the plugin API this is written against (rt.core.api.API_VERSION)


@hookimpl
def rt_register(registry):
    registry.add_backend("app_single", "rt.plugins.app_single.backend:AppBackend", version=VERSION,
                         summary="one process in its own namespaces and cgroups (runc-class)")


@hookimpl
def rt_bench_targets(bench):
    from .bench import targets
    for t in targets():
        bench.add(t)
