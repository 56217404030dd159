"""The hooks an rt plugin implements. Every hook here is documented in docs/plugins.md.

A plugin is any module or object registered under the `rt.plugins` entry-point group
(the built-in plugins use the same group). Hooks are synchronous: they describe and
check; the async or long-running work lives in the Backend classes they register.
"""
import pluggy

hookspec = pluggy.HookspecMarker("rt")


@hookspec
def rt_register(registry):
    """Register what the plugin provides.

    Call ``registry.add_backend(name, "module:Class", version=..., summary=...)`` for each
    isolation kind (the backend is named by import path, so later verbs can load it
    without scanning plugins), and ``registry.add_verb(name, "module:function", help=...)``
    for extra CLI verbs (e.g. ``rt console``).
    """


@hookspec
def rt_check_spec(spec, plugin):
    """Check or adjust a decoded, validated config before ``create``.

    ``spec`` is an ``rt.spec.Spec``; ``plugin`` the name of the chosen backend. Raise
    ``rt.spec.SpecError`` or ``rt.core.api.RtError`` to reject it with a clear message.
    Called for every installed plugin, so a plugin only checks its own annotations.
    """


@hookspec
def rt_claim(spec):
    """Claim a bundle that names no backend (no ``--plugin``, no ``rt.plugin`` annotation):
    return a backend name this plugin registered, or None. ``spec`` is an ``rt.spec.Spec``.
    Two plugins claiming one bundle is an error that names both. (API 1.1)
    """


@hookspec
def rt_features(features):
    """Add to the ``rt features`` document (a dict in runtime-spec features.md shape)."""


@hookspec
def rt_bench_targets(bench):
    """Add targets to ``rt bench``: ``bench.add(target)`` with an ``rt.core.api.bench.BenchTarget``
    (usually an ``rt.core.api.bench.OciTarget`` for the plugin's own backend) and any peer it is compared
    with (runc, LXC, a bare QEMU). Called only by ``rt bench``; import lazily inside.
    A backend without a target is still measured, as a plain OCI runtime.
    """
