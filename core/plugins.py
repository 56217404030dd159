"""Load plugins from the `rt.plugins` entry-point group and choose a backend.

Switches for operators (rt runs as root, so what loads must be controllable):
  RT_DISABLE_PLUGIN_AUTOLOAD=1   load only rt's built-in plugins
  RT_DISABLED_PLUGINS=a,b        never load these plugin names
"""
import importlib
import os

from .errors import RtError

GROUP = "rt.plugins"
DEFAULT = "app_single"
ANNOTATION = "rt.plugin"


class BackendInfo:
    def __init__(self, name, target, version, summary, plugin):
        self.name, self.target, self.version, self.summary, self.plugin = name, target, version, summary, plugin


class VerbInfo:
    def __init__(self, name, target, help, plugin):
        self.name, self.target, self.help, self.plugin = name, target, help, plugin


class Registry:
    """Handed to `rt_register`; plugins add their backends and verbs here."""

    def __init__(self):
        self.backends: dict[str, BackendInfo] = {}
        self.verbs: dict[str, VerbInfo] = {}
        self._current = None

    def add_backend(self, name: str, target: str, *, version: str = "0", summary: str = "") -> None:
        if name in self.backends:
            raise RtError(f"plugin {self._current}: backend {name!r} is already registered by "
                          f"{self.backends[name].plugin}")
        self.backends[name] = BackendInfo(name, target, version, summary, self._current)

    def add_verb(self, name: str, target: str, *, help: str = "") -> None:
        if name in self.verbs:
            raise RtError(f"plugin {self._current}: verb {name!r} is already registered")
        self.verbs[name] = VerbInfo(name, target, help, self._current)


def disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get("RT_DISABLED_PLUGINS", "").split(",") if n.strip()}


def _entry_points():
    from importlib.metadata import entry_points
    autoload = os.environ.get("RT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    off = disabled_names()
    for ep in entry_points(group=GROUP):
        if ep.name in off:
            continue
        if not autoload and not ep.value.startswith("rt.plugins."):
            continue
        yield ep


class Manager:
    def __init__(self):
        import pluggy
        from . import hookspecs
        self.pm = pluggy.PluginManager("rt")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.dists: dict[str, str] = {}

    def load(self) -> "Manager":
        for ep in _entry_points():
            try:
                plugin = ep.load()
            except Exception as e:
                raise RtError(f"plugin {ep.name}: cannot load {ep.value}: {e}")
            self.pm.register(plugin, name=ep.name)
            self.dists[ep.name] = ep.dist.version if ep.dist else "?"
        self.pm.check_pending()
        for impl in self.pm.hook.rt_register.get_hookimpls():
            self.registry._current = impl.plugin_name
            impl.function(registry=self.registry)
        self.registry._current = None
        return self

    def select(self, explicit: str | None, annotations: dict | None) -> BackendInfo:
        """Explicit choice, then the rt.plugin annotation, then the default."""
        ann = (annotations or {}).get(ANNOTATION)
        if explicit and ann and explicit != ann:
            raise RtError(f"plugin conflict: {explicit!r} was chosen explicitly but annotation "
                          f"{ANNOTATION}={ann!r}")
        name = explicit or ann or DEFAULT
        info = self.registry.backends.get(name)
        if info is None:
            known = ", ".join(sorted(self.registry.backends)) or "none"
            why = " (disabled by RT_DISABLED_PLUGINS)" if name in disabled_names() else ""
            raise RtError(f"unknown plugin {name!r}{why}; installed: {known}")
        return info


def load_target(target: str, plugin: str | None = None):
    """Import "module:attr" (a backend class or verb function recorded at create time)."""
    if plugin and plugin in disabled_names():
        raise RtError(f"plugin {plugin!r} is disabled by RT_DISABLED_PLUGINS")
    mod, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise RtError(f"cannot load {target}: {e}")
    return obj
