"""Load plugins from the `rt.plugins` entry-point group and choose a backend.

Switches for operators (rt runs as root, so what loads must be controllable):
  RT_DISABLE_PLUGIN_AUTOLOAD=1   load only rt's built-in plugins
  RT_DISABLED_PLUGINS=a,b        never load these plugin names
  RT_DISABLE_CLAIMS=1            plugins' rt_claim choose no backend: only --plugin and the annotation do
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
        from .cli import VERBS
        if name in VERBS:  # it would never run: the built-in one wins
            raise RtError(f"plugin {self._current}: verb {name!r} is one of rt's own")
        if name in self.verbs:
            raise RtError(f"plugin {self._current}: verb {name!r} is already registered")
        self.verbs[name] = VerbInfo(name, target, help, self._current)


# module prefix -> plugin name: which plugin's code an exception came through
_OWNERS: dict[str, str] = {}


def _prefix(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "rt":
        return parts[0]  # a third-party plugin's package
    return ".".join(parts[:3]) if parts[1:2] == ["plugins"] else module


def own(module: str, plugin: str | None) -> None:
    """Record that `module` (and its package) is `plugin`'s code."""
    if plugin and module:
        _OWNERS.setdefault(_prefix(module), plugin)


def _owner(module: str) -> str | None:
    while module:
        if module in _OWNERS:
            return _OWNERS[module]
        module = module.rpartition(".")[0]
    return None


def plugin_of(exc: BaseException) -> str | None:
    """The plugin whose code `exc` was raised in or passed through (the innermost one)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        obj = frame.f_locals.get("self")
        for module in (frame.f_globals.get("__name__") or "", type(obj).__module__ if obj is not None else ""):
            found = _owner(module) or found
        tb = tb.tb_next
    return found


def disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get("RT_DISABLED_PLUGINS", "").split(",") if n.strip()}


class EntryPoint:
    def __init__(self, name: str, value: str, dist: str, version: str):
        self.name, self.value, self.dist, self.version = name, value, dist, version

    def load(self):
        return load_target(self.value) if ":" in self.value else importlib.import_module(self.value)


def scan_entry_points(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """The entry points of `group` in the distributions on sys.path.

    Reads *.dist-info/entry_points.txt directly: importlib.metadata costs ~30 ms to import
    here, more than all the rest of `create`. The first distribution of a name wins, as
    with importlib.metadata.
    """
    import sys
    seen, found = set(), []
    for entry in (sys.path if path is None else path):
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for d in sorted(names):
            if not d.endswith((".dist-info", ".egg-info")):
                continue
            dist, _, version = d.rsplit(".", 1)[0].partition("-")
            key = dist.lower().replace("-", "_").replace(".", "_")
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(entry, d, "entry_points.txt")) as f:
                    text = f.read()
            except OSError:
                continue
            if not version:
                version = _metadata_version(os.path.join(entry, d))
            section = None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == group and "=" in line and not line.startswith(("#", ";")):
                    name, _, value = line.partition("=")
                    found.append(EntryPoint(name.strip(), value.split("[")[0].strip(), dist, version))
    return found


def _metadata_version(path: str) -> str:
    for name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
        except OSError:
            continue
    return ""


def _entry_points():
    autoload = os.environ.get("RT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    off = disabled_names()
    for ep in scan_entry_points(GROUP):
        if ep.name in off:
            continue
        if not autoload and not ep.value.startswith("rt.plugins."):
            continue
        yield ep


_shared: tuple | None = None


def _install_key() -> tuple:
    """What the installed plugins depend on: an install or removal changes a directory's mtime."""
    import sys
    key = [os.environ.get("RT_DISABLED_PLUGINS", ""), os.environ.get("RT_DISABLE_PLUGIN_AUTOLOAD", "")]
    for d in sys.path:
        try:
            key.append(os.stat(d or ".").st_mtime_ns)
        except OSError:
            key.append(None)
    return tuple(key)


class Manager:
    @classmethod
    def shared(cls) -> "Manager":
        """A loaded Manager, kept while the installed distributions stay the same (the
        resident core scans entry points once, not per request)."""
        global _shared
        key = _install_key()
        if _shared is None or _shared[0] != key:
            _shared = (key, cls().load())
        return _shared[1]

    def __init__(self):
        import pluggy
        from . import hookspecs
        self.pm = pluggy.PluginManager("rt")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.dists: dict[str, str] = {}
        self.broken: dict[str, str] = {}  # plugin name -> why it is disabled

    def _break(self, name: str, why: str) -> None:
        """A plugin that fails to load or register is disabled and named (in the log, in
        `rt features` and on its stderr); the others go on: on a node, one bad plugin must not
        stop every container."""
        from . import log
        why = why.removeprefix(f"plugin {name}: ")
        self.broken[name] = why
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        log.warning(f"plugin {name} is disabled: {why}")

    def load(self) -> "Manager":
        builtin = set()
        for ep in _entry_points():
            try:
                plugin = ep.load()
                why = api_mismatch(getattr(plugin, "RT_API", None))
                if why:
                    self._break(ep.name, why)
                    continue
                own(ep.value.partition(":")[0], ep.name)
                self.pm.register(plugin, name=ep.name)
                self.pm.check_pending()  # a hook name rt does not know: a misspelling
            except Exception as e:
                self._break(ep.name, f"cannot load {ep.value}: {describe(e)}")
                continue
            self.dists[ep.name] = ep.version or "?"
            if ep.value.startswith("rt.plugins."):
                builtin.add(ep.name)
        self.pm.check_pending()
        # rt's own register first: a third party that takes one of their names is the one disabled
        for impl in sorted(self.pm.hook.rt_register.get_hookimpls(), key=lambda i: i.plugin_name not in builtin):
            name = impl.plugin_name
            self.registry._current = name
            added = (set(self.registry.backends), set(self.registry.verbs))
            try:
                impl.function(registry=self.registry)
            except Exception as e:
                for n in set(self.registry.backends) - added[0]:
                    del self.registry.backends[n]
                for n in set(self.registry.verbs) - added[1]:
                    del self.registry.verbs[n]
                self._break(name, e.msg if isinstance(e, RtError) else f"rt_register: {describe(e)}")
        self.registry._current = None
        for item in (*self.registry.backends.values(), *self.registry.verbs.values()):
            own(item.target.partition(":")[0], item.plugin)
        return self

    def select(self, explicit: str | None, annotations: dict | None, spec=None) -> BackendInfo:
        """Explicit choice, then the rt.plugin annotation, then a plugin's claim, then the default."""
        ann = (annotations or {}).get(ANNOTATION)
        if explicit and ann and explicit != ann:
            raise RtError(f"plugin conflict: {explicit!r} was chosen explicitly but annotation "
                          f"{ANNOTATION}={ann!r}")
        name = explicit or ann or (self._claim(spec) if spec is not None else None) or DEFAULT
        info = self.registry.backends.get(name)
        if info is None and name in self.broken:
            raise RtError(f"plugin {name!r} is disabled: {self.broken[name]}")
        if info is None:
            known = ", ".join(sorted(self.registry.backends)) or "none"
            why = " (disabled by RT_DISABLED_PLUGINS)" if name in disabled_names() else ""
            raise RtError(f"unknown plugin {name!r}{why}; installed: {known}")
        return info


    def _claim(self, spec) -> str | None:
        """The backend that a plugin's rt_claim names for this spec. A failing hook, or one that
        names anything but a backend of its own plugin, claims nothing. RT_DISABLE_CLAIMS=1:
        none (the operator wants only --plugin and the annotation to choose)."""
        from . import log
        if os.environ.get("RT_DISABLE_CLAIMS", "") not in ("", "0"):
            return None
        claims = {}
        for impl in self.pm.hook.rt_claim.get_hookimpls():
            try:
                name = impl.function(spec=spec)
            except Exception as e:
                log.warning(f"plugin {impl.plugin_name}: rt_claim failed, ignored: {describe(e)}")
                continue
            if name is None:
                continue
            info = self.registry.backends.get(name) if isinstance(name, str) else None
            if info is None or info.plugin != impl.plugin_name:
                log.warning(f"plugin {impl.plugin_name}: rt_claim named {name!r}, not a backend of its own; ignored")
                continue
            claims.setdefault(name, []).append(impl.plugin_name)
        if len(claims) > 1:
            who = "; ".join(f"{', '.join(p)} claim {n!r}" for n, p in sorted(claims.items()))
            raise RtError(f"plugin conflict: {who}; choose one with --plugin or the {ANNOTATION} annotation")
        return next(iter(claims), None)


def api_mismatch(wanted) -> str | None:
    """Why a plugin written against API `wanted` ("MAJOR.MINOR", None: "1.0") cannot load here."""
    from .api import API_VERSION
    if wanted is None:
        return None
    have = tuple(int(x) for x in API_VERSION.split("."))
    try:
        major, minor = (int(x) for x in str(wanted).split("."))
    except ValueError:
        return f"RT_API = {wanted!r} is not a version MAJOR.MINOR (this rt's plugin API is {API_VERSION})"
    if major != have[0] or minor > have[1]:
        return f"it needs rt's plugin API {major}.{minor}; this rt has {API_VERSION}"
    return None


def load_target(target: str, plugin: str | None = None):
    """Import "module:attr" (a backend class or verb function recorded at create time)."""
    if plugin and plugin in disabled_names():
        raise RtError(f"plugin {plugin!r} is disabled by RT_DISABLED_PLUGINS")
    mod, _, attr = target.partition(":")
    own(mod, plugin)
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise RtError(f"cannot load {target}: {e}")
    return obj


def describe(e: BaseException) -> str:
    """An exception as one line: its type and message ("KeyError: 'boom'")."""
    text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if isinstance(e, OSError) and e.filename:
        text += f": {e.filename}"
    text = " ".join(text.splitlines())  # one line, as every error is
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
