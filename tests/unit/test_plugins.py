"""Unit tests of rt.core.plugins: the registry, backend selection, disabling and load_target."""
import os.path
import sys
import types

import pytest

from rt.core import api
from rt.core.errors import RtError
from rt.core.plugins import ANNOTATION, DEFAULT, Manager, Registry, disabled_names, load_target

APP_TARGET = "rt.plugins.app_single.backend:AppBackend"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("RT_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("RT_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture
def mgr():
    m = Manager().load()
    m.registry._current = "extra"
    m.registry.add_backend("other", "some.module:Other", version="2", summary="another kind")
    m.registry._current = None
    return m


class ExtraPlugin:
    """A plugin object as a third party would register it."""

    def __init__(self, backend):
        self.backend = backend

    @api.hookimpl
    def rt_register(self, registry):
        registry.add_backend(self.backend, "x.y:Z", version="9")
        registry.add_verb("extra-verb", "x.y:console", help="attach")


# --- Registry --------------------------------------------------------------------------------------


def test_registry_records_plugin_of_each_entry():
    reg = Registry()
    reg._current = "p1"
    reg.add_backend("b1", "m:B", version="1.0", summary="s")
    reg.add_verb("v1", "m:v", help="h")
    info = reg.backends["b1"]
    assert (info.name, info.target, info.version, info.summary, info.plugin) == ("b1", "m:B", "1.0", "s", "p1")
    v = reg.verbs["v1"]
    assert (v.name, v.target, v.help, v.plugin) == ("v1", "m:v", "h", "p1")


def test_registry_duplicate_backend():
    reg = Registry()
    reg._current = "p1"
    reg.add_backend("b", "m:B")
    reg._current = "p2"
    with pytest.raises(RtError) as e:
        reg.add_backend("b", "n:B")
    assert e.value.msg == "plugin p2: backend 'b' is already registered by p1"
    assert reg.backends["b"].target == "m:B"  # the first one stays


def test_registry_duplicate_verb():
    reg = Registry()
    reg._current = "p1"
    reg.add_verb("extra-verb", "m:c")
    with pytest.raises(RtError, match="plugin p1: verb 'extra-verb' is already registered"):
        reg.add_verb("extra-verb", "m:d")


# --- Manager.load ------------------------------------------------------------------------------------


def test_load_finds_builtin_app_single():
    m = Manager().load()
    info = m.registry.backends["app_single"]
    assert info.target == APP_TARGET
    assert info.plugin == "app_single"
    assert info.version == "0.1.0"
    assert m.dists["app_single"] == "0.1.0"
    assert m.registry._current is None


def test_load_with_autoload_disabled_keeps_builtins(monkeypatch):
    monkeypatch.setenv("RT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "app_single" in Manager().load().registry.backends


def test_load_calls_every_registered_plugin():
    m = Manager()
    m.pm.register(ExtraPlugin("kvm"), name="extra")
    m.load()
    assert set(m.registry.backends) >= {"app_single", "kvm"}
    assert m.registry.backends["kvm"].plugin == "extra"
    assert m.registry.verbs["extra-verb"].plugin == "extra"


def test_load_conflicting_plugins_disables_the_latecomer():
    m = Manager()
    m.pm.register(ExtraPlugin("app_single"), name="extra")
    m.load()
    assert m.broken == {"extra": "backend 'app_single' is already registered by app_single"}
    assert m.registry.backends["app_single"].plugin == "app_single"
    assert "extra-verb" not in m.registry.verbs  # nothing of what it registered stays
    assert m.pm.get_plugin("extra") is None
    with pytest.raises(RtError, match="'extra' is disabled"):
        m.select("extra", None)


class VerbThief:
    @api.hookimpl
    def rt_register(self, registry):
        registry.add_verb("state", "x.y:z")


def test_a_verb_named_like_one_of_rt_s_is_refused():
    m = Manager()
    m.pm.register(VerbThief(), name="thief")
    m.load()
    assert m.broken == {"thief": "verb 'state' is one of rt's own"}
    assert m.select(None, None).name == DEFAULT


# --- select ------------------------------------------------------------------------------------------------


def test_select_default(mgr):
    assert DEFAULT == "app_single"
    assert mgr.select(None, None).name == "app_single"
    assert mgr.select(None, {}).name == "app_single"
    assert mgr.select("", {"other.annotation": "x"}).name == "app_single"


def test_select_annotation(mgr):
    assert ANNOTATION == "rt.plugin"
    info = mgr.select(None, {"rt.plugin": "other"})
    assert (info.name, info.target, info.plugin) == ("other", "some.module:Other", "extra")


def test_select_explicit_beats_default(mgr):
    assert mgr.select("other", None).name == "other"
    assert mgr.select("app_single", {}).name == "app_single"


def test_select_explicit_and_same_annotation(mgr):
    assert mgr.select("other", {"rt.plugin": "other"}).name == "other"


def test_select_conflict(mgr):
    with pytest.raises(RtError) as e:
        mgr.select("app_single", {"rt.plugin": "other"})
    assert "conflict" in e.value.msg
    assert "'app_single'" in e.value.msg and "'other'" in e.value.msg


@pytest.mark.parametrize("explicit,ann", [("nosuch", None), (None, {"rt.plugin": "nosuch"})])
def test_select_unknown_lists_installed(mgr, explicit, ann):
    with pytest.raises(RtError) as e:
        mgr.select(explicit, ann)
    assert e.value.msg == "unknown plugin 'nosuch'; installed: app_single, hypervisor_kvm, lxc_system, other"


def test_disabled_plugin_is_unknown(monkeypatch):
    monkeypatch.setenv("RT_DISABLED_PLUGINS", " foo , app_single,lxc_system,hypervisor_kvm,")
    assert disabled_names() == {"foo", "app_single", "lxc_system", "hypervisor_kvm"}
    m = Manager().load()
    assert "app_single" not in m.registry.backends
    with pytest.raises(RtError) as e:
        m.select(None, None)
    assert e.value.msg == "unknown plugin 'app_single' (disabled by RT_DISABLED_PLUGINS); installed: none"


def test_disabling_another_plugin_keeps_app_single(monkeypatch):
    monkeypatch.setenv("RT_DISABLED_PLUGINS", "lxc_system")
    assert Manager().load().select(None, None).name == "app_single"


# --- load_target --------------------------------------------------------------------------------------------


def test_load_target_backend_class():
    cls = load_target(APP_TARGET, "app_single")
    from rt.plugins.app_single.backend import AppBackend
    assert cls is AppBackend
    assert issubclass(cls, api.Backend)
    assert cls().name == "app_single"


def test_load_target_dotted_attribute():
    assert load_target("os:path.join") is os.path.join


@pytest.mark.parametrize("target,why", [
    ("rt.no_such_module:X", "No module named"),
    ("rt.plugins.app_single.backend:Nope", "has no attribute 'Nope'"),
    ("rt.plugins.app_single.backend:AppBackend.nope", "has no attribute 'nope'"),
    ("rt.plugins.app_single.backend", "has no attribute ''"),
])
def test_load_target_bad(target, why):
    with pytest.raises(RtError) as e:
        load_target(target)
    assert e.value.msg.startswith(f"cannot load {target}: ")
    assert why in e.value.msg


@pytest.mark.parametrize("target", ["", ":AppBackend"])
def test_load_target_empty_module(target):
    with pytest.raises(RtError, match="cannot load"):
        load_target(target)


def test_load_target_of_disabled_plugin(monkeypatch):
    monkeypatch.setenv("RT_DISABLED_PLUGINS", "app_single")
    with pytest.raises(RtError) as e:
        load_target(APP_TARGET, "app_single")
    assert e.value.msg == "plugin 'app_single' is disabled by RT_DISABLED_PLUGINS"
    # without the plugin name the target still loads (it is only a path)
    assert load_target(APP_TARGET).__name__ == "AppBackend"


# --- an exception in plugin code names the plugin ------------------------------------------------------------


class FaultyRegister:
    @api.hookimpl
    def rt_register(self, registry):
        raise KeyError("boom")


def test_exception_in_rt_register_disables_and_names_the_plugin():
    m = Manager()
    m.pm.register(FaultyRegister(), name="faulty")
    m.load()
    assert m.broken == {"faulty": "rt_register: KeyError: 'boom'"}
    assert m.select(None, None).name == DEFAULT  # every other kind still works


def fake_dist(root, name: str, module: str, code: str) -> None:
    """A distribution on sys.path whose `rt.plugins` entry point is `module` (the code in it)."""
    (root / f"{module}.py").write_text(code)
    d = root / f"{name}-1.0.dist-info"
    d.mkdir()
    (d / "entry_points.txt").write_text(f"[rt.plugins]\n{name} = {module}\n")


@pytest.mark.parametrize("code, why", [
    ("import no_such_module_anywhere\n", "cannot load rt_test_broken: ModuleNotFoundError"),
    ("from rt.core import api\n@api.hookimpl\ndef rt_regster(registry):\n    pass\n",
     "cannot load rt_test_broken: PluginValidationError"),
])
def test_a_plugin_that_cannot_load_leaves_the_others_working(tmp_path, monkeypatch, code, why):
    fake_dist(tmp_path, "broken", "rt_test_broken", code)
    monkeypatch.syspath_prepend(str(tmp_path))
    m = Manager().load()
    assert m.broken["broken"].startswith(why), m.broken
    assert {"app_single", "lxc_system", "hypervisor_kvm"} <= set(m.registry.backends)
    sys.modules.pop("rt_test_broken", None)


BOOM = '''
from rt.core import api

class Boom(api.Backend):
    def create(self, req):
        return {}["boom"]
'''


@pytest.fixture
def owners(monkeypatch):
    """plugin_of's module table, restored after the test."""
    from rt.core import plugins
    monkeypatch.setattr(plugins, "_OWNERS", dict(plugins._OWNERS))
    return plugins


def test_plugin_of_names_the_plugin_whose_code_raised(tmp_path, monkeypatch, owners):
    (tmp_path / "rt_boom_plugin.py").write_text(BOOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rt_boom_plugin", raising=False)  # gone again after the test
    backend = load_target("rt_boom_plugin:Boom", "boom")()
    with pytest.raises(KeyError) as e:
        backend.create(None)
    assert owners.plugin_of(e.value) == "boom"
    assert owners.describe(e.value) == "KeyError: 'boom'"


def test_plugin_of_a_builtin_backend_running_core_code(owners):
    """AppBackend is OciBackend under a name: what fails in its methods is still app_single's."""
    backend = load_target(APP_TARGET, "app_single")()
    with pytest.raises(TypeError) as e:
        backend.kill(types.SimpleNamespace(pid="not a pid"), 0)
    assert owners.plugin_of(e.value) == "app_single"


def test_plugin_of_core_code_is_none(owners):
    load_target(APP_TARGET, "app_single")
    with pytest.raises(KeyError) as e:
        {}["x"]
    assert owners.plugin_of(e.value) is None


def test_describe_os_errors():
    from rt.core.plugins import describe
    assert describe(FileNotFoundError(2, "No such file or directory", "/x")) == \
        "FileNotFoundError: No such file or directory: /x"
    assert describe(ValueError()) == "ValueError"


@pytest.mark.parametrize("declared, ok", [(None, True), ('"1.0"', True), ('"2.0"', False), ('"1.9"', False),
                                          ('"0.9"', False), ('"one"', False)])
def test_a_plugin_names_the_api_it_was_written_for(tmp_path, monkeypatch, declared, ok):
    """RT_API "MAJOR.MINOR": the same major and a minor not newer than rt's load; none is 1.0."""
    line = f"RT_API = {declared}\n" if declared else ""
    fake_dist(tmp_path, "apiplug", "rt_test_apiplug", "from rt.core import api\n" + line +
              "@api.hookimpl\ndef rt_register(registry):\n    registry.add_backend('apikind', 'x.y:Z')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = Manager().load()
    sys.modules.pop("rt_test_apiplug", None)
    assert ("apikind" in m.registry.backends) == ok, m.broken
    if not ok:
        assert f"this rt has {api.API_VERSION}" in m.broken["apiplug"] or \
            f"this rt's plugin API is {api.API_VERSION}" in m.broken["apiplug"]
        with pytest.raises(RtError, match="'apiplug' is disabled: "):
            m.select("apiplug", None)


# --- rt_claim (API 1.1) --------------------------------------------------------------------------
class Claimer:
    def __init__(self, name, claim):
        self.name, self.claim = name, claim

    @api.hookimpl
    def rt_claim(self, spec):
        if self.claim == "boom":
            raise ValueError("broken claim")
        return self.claim if spec.process.args[0].endswith(".wasm") else None


def _spec(arg0):
    import json
    from rt.spec import load_config
    return load_config(json.dumps({"ociVersion": "1.0.2", "process": {"args": [arg0], "cwd": "/",
                                                                       "user": {"uid": 0, "gid": 0}}}).encode())


def _claimers(mgr, *plugins):
    """Plugins c1, c2, ... each with a backend of its own named after it (kind-c1, ...)."""
    for name, claim in plugins:
        mgr.registry._current = name
        mgr.registry.add_backend(f"kind-{name}", "x.y:Z")
        mgr.registry._current = None
        mgr.pm.register(Claimer(name, claim), name=name)


def test_a_claim_picks_the_backend_only_when_nothing_else_does(mgr):
    _claimers(mgr, ("c1", "kind-c1"))
    assert mgr.select(None, None, _spec("/hello.wasm")).name == "kind-c1"
    assert mgr.select(None, None, _spec("/bin/sh")).name == DEFAULT  # not claimed
    assert mgr.select("app_single", None, _spec("/hello.wasm")).name == "app_single"  # explicit wins
    assert mgr.select(None, {ANNOTATION: "app_single"}, _spec("/hello.wasm")).name == "app_single"


def test_two_claims_are_an_error_naming_both(mgr):
    _claimers(mgr, ("c1", "kind-c1"), ("c2", "kind-c2"))
    with pytest.raises(RtError) as e:
        mgr.select(None, None, _spec("/hello.wasm"))
    assert "c1 claim 'kind-c1'" in e.value.msg and "c2 claim 'kind-c2'" in e.value.msg


@pytest.mark.parametrize("claim", ["boom", "app_single", "kind-c2", ["kind-c1"], "nosuch"])
def test_a_failing_or_foreign_claim_claims_nothing(mgr, claim):
    """An exception, another plugin's backend (app_single is rt's), a non-string, an unknown name."""
    _claimers(mgr, ("c1", claim), ("c2", None))
    assert mgr.select(None, None, _spec("/hello.wasm")).name == DEFAULT


def test_the_operator_can_turn_claims_off(mgr, monkeypatch):
    _claimers(mgr, ("c1", "kind-c1"))
    monkeypatch.setenv("RT_DISABLE_CLAIMS", "1")
    assert mgr.select(None, None, _spec("/hello.wasm")).name == DEFAULT


def test_rt_features_may_add_but_not_change():
    from rt.core.verbs.features import _add_from

    class Impl:
        plugin_name = "greedy"

        @staticmethod
        def function(features):
            features["ociVersionMax"] = "9.9.9"
            features["annotations"]["io.github.rt.version"] = "hijacked"
            features["annotations"]["greedy.key"] = "1"
            features["potentiallyUnsafeConfigAnnotations"].append("greedy.")
            features["greedy"] = {"x": 1}
    feats = {"ociVersionMax": "1.2.0", "annotations": {"io.github.rt.version": "0.1.0"},
             "potentiallyUnsafeConfigAnnotations": ["rt.plugin"]}
    _add_from(Impl, feats)
    assert feats == {"ociVersionMax": "1.2.0",
                     "annotations": {"io.github.rt.version": "0.1.0", "greedy.key": "1"},
                     "potentiallyUnsafeConfigAnnotations": ["rt.plugin", "greedy."], "greedy": {"x": 1}}


def test_rt_features_of_the_wrong_shape_is_ignored():
    from rt.core.verbs.features import _add_from

    class Impl:
        plugin_name = "broken"

        @staticmethod
        def function(features):
            features["annotations"] = None
            features["potentiallyUnsafeConfigAnnotations"] = "rt."
    feats = {"annotations": {"a": "1"}, "potentiallyUnsafeConfigAnnotations": ["rt.plugin"]}
    _add_from(Impl, feats)
    assert feats == {"annotations": {"a": "1"}, "potentiallyUnsafeConfigAnnotations": ["rt.plugin"]}
