"""Unit tests of rt.core.cli: the flag parser and `main` (no root, no /run)."""
import json
import os
import re
import sys

import pytest

from rt.core import cli, log
from rt.core.cli import GLOBAL, VERBS, _parse_flags, main
from rt.core.errors import RtError
from rt.core.store import Store
from rt.spec import load_config

CREATE = VERBS["create"][0]
RUN = VERBS["run"][0]
EXEC = VERBS["exec"][0]
TEXT_LINE = re.compile(r'^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" level=error msg="(.*)"$')


@pytest.fixture(autouse=True)
def _restore_log_state():
    """main() configures the module-global logger; put it back for the next test."""
    saved = dict(log._state)
    yield
    log._state.clear()
    log._state.update(saved)


# --- _parse_flags --------------------------------------------------------------------------


def test_defaults_when_no_flags():
    opts, pos = _parse_flags([], CREATE, "create")
    assert pos == []
    assert opts == {"bundle": ".", "console_socket": None, "pid_file": None, "no_pivot": False,
                    "no_new_keyring": False, "preserve_fds": 0}


def test_flag_space_value_and_positional():
    opts, pos = _parse_flags(["--bundle", "/b", "--pid-file", "/p", "c1"], CREATE, "create")
    assert opts.bundle == "/b" and opts.pid_file == "/p"
    assert pos == ["c1"]


def test_flag_equals_value_keeps_later_equals_signs():
    opts, pos = _parse_flags(["--bundle=/x=y", "c1"], CREATE, "create")
    assert opts.bundle == "/x=y"
    opts, _ = _parse_flags(["--env=A=B=C"], EXEC, "exec")
    assert opts.env == ["A=B=C"]


def test_short_flags_both_forms():
    opts, pos = _parse_flags(["-b", "/b1", "c1"], CREATE, "create")
    assert (opts.bundle, pos) == ("/b1", ["c1"])
    opts, _ = _parse_flags(["-b=/b2"], CREATE, "create")
    assert opts.bundle == "/b2"


def test_bool_flag_takes_no_argument():
    opts, pos = _parse_flags(["--detach", "c1"], RUN, "run")
    assert opts.detach is True
    assert pos == ["c1"]
    opts, pos = _parse_flags(["-d", "--keep", "c1"], RUN, "run")
    assert (opts.detach, opts.keep, pos) == (True, True, ["c1"])


@pytest.mark.parametrize("text,want", [("false", False), ("FALSE", False), ("0", False),
                                       ("true", True), ("1", True)])
def test_bool_flag_with_explicit_value(text, want):
    opts, pos = _parse_flags([f"--no-pivot={text}", "c1"], CREATE, "create")
    assert opts.no_pivot is want
    assert pos == ["c1"]


def test_list_flags_accumulate_and_defaults_are_not_shared():
    opts, pos = _parse_flags(["-e", "A=1", "--env", "B=2", "--env=C=3", "--cap", "CAP_KILL", "c1", "sh"],
                             EXEC, "exec")
    assert opts.env == ["A=1", "B=2", "C=3"]
    assert opts.cap == ["CAP_KILL"]
    assert pos == ["c1", "sh"]
    fresh, _ = _parse_flags([], EXEC, "exec")
    assert fresh.env == [] and fresh.cap == []
    # the table's default list itself was not appended to
    assert [d for names, key, kind, d, _ in EXEC if key == "env"] == [[]]


def test_int_flag():
    opts, _ = _parse_flags(["--preserve-fds", "3"], CREATE, "create")
    assert opts.preserve_fds == 3
    opts, _ = _parse_flags(["--preserve-fds=7"], CREATE, "create")
    assert opts.preserve_fds == 7


@pytest.mark.parametrize("argv", [["--preserve-fds", "x"], ["--preserve-fds=1.5"], ["--preserve-fds="]])
def test_int_flag_bad_value(argv):
    with pytest.raises(RtError, match=r"invalid value .* for flag --preserve-fds: must be an integer"):
        _parse_flags(argv, CREATE, "create")


def test_unknown_flag():
    with pytest.raises(RtError) as e:
        _parse_flags(["--nope", "c1"], CREATE, "create")
    assert e.value.msg == "flag provided but not defined: --nope (create)"
    assert e.value.code == 1


def test_unknown_flag_global_has_no_verb_suffix():
    with pytest.raises(RtError) as e:
        _parse_flags(["--bogus"], GLOBAL, "")
    assert e.value.msg == "flag provided but not defined: --bogus"


def test_missing_argument():
    with pytest.raises(RtError, match="flag needs an argument: --bundle"):
        _parse_flags(["--bundle"], CREATE, "create")


def test_flags_stop_at_first_positional():
    opts, pos = _parse_flags(["c1", "--bundle", "/b"], CREATE, "create")
    assert opts.bundle == "."
    assert pos == ["c1", "--bundle", "/b"]
    # exec: the command's own flags are not ours
    opts, pos = _parse_flags(["-t", "c1", "ls", "-l", "--env", "X"], EXEC, "exec")
    assert opts.tty is True and opts.env == []
    assert pos == ["c1", "ls", "-l", "--env", "X"]


def test_double_dash_ends_flags():
    opts, pos = _parse_flags(["--bundle", "/b", "--", "--not-a-flag", "x"], CREATE, "create")
    assert opts.bundle == "/b"
    assert pos == ["--not-a-flag", "x"]


def test_lone_dash_is_positional():
    opts, pos = _parse_flags(["-", "x"], VERBS["update"][0], "update")
    assert pos == ["-", "x"]
    assert opts.resources is None


def test_opts_attribute_access_for_missing_key_is_none():
    opts, _ = _parse_flags([], CREATE, "create")
    assert opts.no_such_key is None


# --- main ----------------------------------------------------------------------------------


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"rt version {cli.VERSION}\n")
    assert f"spec: {cli.OCI_VERSION}\n" in out
    assert main(["-v"]) == 0
    assert capsys.readouterr().out == out


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    assert "commands:" in out and "global options:" in out
    for verb in VERBS:
        assert re.search(rf"^  {verb}\s", out, re.M), verb
    assert "--root" in out
    plugins = out.split("commands from plugins:")[1].split("global options:")[0]  # the installed plugins'
    for verb in ("stop", "reboot", "console"):
        assert re.search(rf"^  {verb}\s.*\[lxc_system\]$", plugins, re.M), verb


def test_help_verb_and_no_args(capsys):
    assert main(["help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main([]) == 1  # no command: usage, but a failure
    assert "commands:" in capsys.readouterr().out


@pytest.mark.parametrize("word", ["help", "h"])
def test_help_verb_names_a_verb(capsys, word):
    assert main([word, "state"]) == 0
    assert "state [options] container-id" in capsys.readouterr().out
    assert main([word]) == 0
    assert "commands:" in capsys.readouterr().out


def test_verb_help(capsys):
    assert main(["state", "--help"]) == 0
    out = capsys.readouterr().out
    assert "state [options] container-id" in out
    assert main(["kill", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--all, -a" in out


def test_unknown_verb(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RT_DISABLED_PLUGINS", raising=False)
    assert main(["--root", str(tmp_path), "frobnicate", "x"]) == 1
    err = capsys.readouterr().err
    m = TEXT_LINE.match(err.rstrip("\n"))
    assert m, err
    assert "unknown command" in m.group(1) and "frobnicate" in m.group(1)


def test_unknown_global_flag(capsys):
    assert main(["--bogus", "state", "x"]) == 1
    err = capsys.readouterr().err
    assert TEXT_LINE.match(err.rstrip("\n")).group(1) == "flag provided but not defined: --bogus"


def test_bad_log_format(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "--log-format", "xml", "state", "x"]) == 1
    assert "unknown log-format" in capsys.readouterr().err


def test_state_missing_container_text(capsys, tmp_path):
    rc = main(["--root", str(tmp_path), "state", "nosuch"])
    assert rc == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1
    m = TEXT_LINE.match(lines[0])
    assert m, cap.err
    assert m.group(1) == "container does not exist"


def test_state_requires_id(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "state"]) == 1
    assert 'msg="\\"state\\" requires a container id"' in capsys.readouterr().err


def test_state_missing_container_json_log(capsys, tmp_path):
    logf = tmp_path / "log.json"
    rc = main(["--root", str(tmp_path / "root"), "--log", str(logf), "--log-format", "json", "state", "nosuch"])
    assert rc == 1
    assert capsys.readouterr().err == "container does not exist\n"
    lines = logf.read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["level"] == "error"
    assert rec["msg"] == "container does not exist"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["time"])


def test_state_missing_container_text_log_file(capsys, tmp_path):
    logf = tmp_path / "log.txt"
    assert main(["--root", str(tmp_path), "--log", str(logf), "state", "nosuch"]) == 1
    assert capsys.readouterr().err == "container does not exist\n"
    assert TEXT_LINE.match(logf.read_text().rstrip("\n")).group(1) == "container does not exist"


def test_json_format_without_log_file_prints_the_json_record(capsys, tmp_path):
    """As runc (logrus on stderr): {"level":"error","msg":...,"time":...}."""
    import json
    assert main(["--root", str(tmp_path), "--log-format", "json", "state", "nosuch"]) == 1
    rec = json.loads(capsys.readouterr().err)
    assert (rec["level"], rec["msg"]) == ("error", "container does not exist") and rec["time"]


def test_state_of_existing_container(capsys, tmp_path):
    st = Store(str(tmp_path))
    c = st.create("c1", {"bundle": "/b", "rootfs": "/b/rootfs", "created": "2024-01-01T00:00:00.000000000Z",
                         "owner": "", "pid": 0})
    c.record["creating"] = False
    c.save()
    c.unlock()
    assert main(["--root", str(tmp_path), "state", "c1"]) == 0
    out = capsys.readouterr().out
    state = json.loads(out)
    assert list(state) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]
    assert state["id"] == "c1" and state["status"] == "stopped" and state["pid"] == 0
    assert state["bundle"] == "/b"


def test_spec_writes_valid_config_and_refuses_overwrite(capsys, tmp_path):
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    path = tmp_path / "config.json"
    data = path.read_bytes()
    spec = load_config(data)
    assert spec.oci_version == cli.OCI_VERSION
    assert spec.process.args == ["sh"]
    assert spec.root.path == "rootfs"
    assert {ns.type for ns in spec.linux.namespaces} == {"pid", "network", "ipc", "uts", "mount", "cgroup"}

    assert main(["spec", "-b", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "File config.json exists. Remove it first." in err
    assert path.read_bytes() == data  # untouched


def test_spec_rootless(tmp_path):
    assert main(["spec", "--rootless", "--bundle", str(tmp_path)]) == 0
    spec = load_config((tmp_path / "config.json").read_bytes())
    assert "user" in {ns.type for ns in spec.linux.namespaces}
    assert spec.linux.uid_mappings[0].host_id == os.getuid()
    assert spec.linux.gid_mappings[0].host_id == os.getgid()
    assert spec.linux.resources is None


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_is_runcs(tmp_path, rootless):
    """`rt spec [--rootless]` writes what `runc spec [--rootless]` writes, but for the
    ociVersion and the hostname."""
    import json
    import shutil
    import subprocess
    if not shutil.which("runc"):
        if os.environ.get("CI"):
            pytest.fail("runc is required in CI (scripts/setup installs it)")
        pytest.skip("runc is not installed")
    flag = ["--rootless"] if rootless else []
    (tmp_path / "runc").mkdir()
    subprocess.run(["runc", "spec", *flag], cwd=tmp_path / "runc", check=True)
    assert main(["spec", *flag, "--bundle", str(tmp_path)]) == 0
    want = json.loads((tmp_path / "runc" / "config.json").read_text())
    got = json.loads((tmp_path / "config.json").read_text())
    for doc in (want, got):
        del doc["ociVersion"], doc["hostname"]
    if {"type": "cgroup"} not in want["linux"]["namespaces"]:  # runc 1.2 added it (Debian 12 has 1.1.5)
        got["linux"]["namespaces"].remove({"type": "cgroup"}) if not rootless else None
    assert got == want


def test_spec_into_missing_dir_is_an_rt_error(capsys, tmp_path):
    assert main(["spec", "--bundle", str(tmp_path / "missing")]) == 1
    assert "spec: No such file or directory" in capsys.readouterr().err


# --- what `create` says when something fails -----------------------------------------------------


FAULTY_PLUGIN = '''
from rt.core import api

@api.hookimpl
def rt_register(registry):
    registry.add_backend("faulty", "rt_faulty_unit:Faulty", version="1")

@api.hookimpl
def rt_check_spec(spec, plugin):
    if plugin == "faulty" and spec.annotations.get("faulty.check") == "crash":
        int("not a number")

class Faulty(api.Backend):
    def create(self, req):
        return {}["boom"]
'''


@pytest.fixture
def faulty_plugin(tmp_path, monkeypatch):
    """A third-party plugin, installed as pip would (a dist-info with its entry point)."""
    site = tmp_path / "site"
    (site / "rt_faulty_unit-1.dist-info").mkdir(parents=True)
    (site / "rt_faulty_unit-1.dist-info" / "entry_points.txt").write_text("[rt.plugins]\nfaulty = rt_faulty_unit\n")
    (site / "rt_faulty_unit.py").write_text(FAULTY_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "rt_faulty_unit", raising=False)
    monkeypatch.delenv("RT_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("RT_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def bundle_with(tmp_path, **fields) -> str:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    cfg = {"ociVersion": "1.2.0", "root": {"path": str(rootfs)},
           "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, **fields}
    b = tmp_path / "bundle"
    b.mkdir(exist_ok=True)
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    m = TEXT_LINE.match(err.rstrip("\n"))
    assert m and len(err.splitlines()) == 1, err
    return json.loads(f'"{m.group(1)}"')


def test_exception_in_a_plugin_backend_names_the_plugin(capsys, tmp_path, faulty_plugin):
    b = bundle_with(tmp_path, annotations={"rt.plugin": "faulty"})
    assert main(["--root", str(tmp_path / "state"), "create", "--bundle", b, "c1"]) == 1
    assert error_of(capsys) == "plugin faulty: KeyError: 'boom'"
    assert os.listdir(tmp_path / "state") == []


def test_exception_in_a_plugin_check_names_the_plugin(capsys, tmp_path, faulty_plugin):
    b = bundle_with(tmp_path, annotations={"rt.plugin": "faulty", "faulty.check": "crash"})
    assert main(["--root", str(tmp_path / "state"), "create", "--bundle", b, "c1"]) == 1
    assert error_of(capsys) == "plugin faulty: ValueError: invalid literal for int() with base 10: 'not a number'"


def test_exception_in_core_code_names_its_type(capsys, tmp_path, monkeypatch):
    from rt.core.verbs import state
    def broken(g, opts, pos):
        return {}["x"]
    monkeypatch.setattr(state, "run", broken)
    assert main(["--root", str(tmp_path), "state", "c1"]) == 1
    assert error_of(capsys) == "KeyError: 'x'"


def test_rt_error_messages_stay_as_they_are(capsys, tmp_path, faulty_plugin):
    b = bundle_with(tmp_path, annotations={"rt.plugin": "nosuch"})
    assert main(["--root", str(tmp_path / "state"), "create", "--bundle", b, "c1"]) == 1
    assert error_of(capsys).startswith("unknown plugin 'nosuch'; installed: ")


def test_root_path_that_is_a_file(capsys, tmp_path):
    b = bundle_with(tmp_path)
    cfg = json.loads((tmp_path / "bundle" / "config.json").read_text())
    (tmp_path / "file").write_text("")
    cfg["root"]["path"] = str(tmp_path / "file")
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(cfg))
    assert main(["--root", str(tmp_path / "state"), "create", "--bundle", b, "c1"]) == 1
    assert error_of(capsys) == f"invalid rootfs: {tmp_path}/file: not a directory"
    cfg["root"]["path"] = "missing"
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(cfg))
    assert main(["--root", str(tmp_path / "state"), "create", "--bundle", b, "c1"]) == 1
    assert error_of(capsys) == f"rootfs ({b}/missing) does not exist"


@pytest.mark.parametrize("text, want", [("1024", 1024), ("512k", 512 << 10), ("100M", 100 << 20), ("1.5g", 3 << 29),
                                        ("2GiB", 2 << 30), ("64 mb", 64 << 20)])
def test_update_sizes_as_runc(text, want):
    from rt.core.verbs.update import ram_in_bytes
    assert ram_in_bytes(text, "--memory") == want


@pytest.mark.parametrize("text", ["", "-5", "1x", "m", "1..2"])
def test_update_bad_sizes(text):
    from rt.core.errors import RtError
    from rt.core.verbs.update import ram_in_bytes
    with pytest.raises(RtError, match="invalid value for --memory"):
        ram_in_bytes(text, "--memory")


def test_features_as_the_spec_means_them(capsys):
    """seccomp flags probed from this kernel, the annotations that change rt's behaviour,
    plugin details under annotations, and label support in the spec's sense."""
    import json
    import msgspec
    from rt.spec.features import Features
    assert main(["features"]) == 0
    raw = capsys.readouterr().out
    feats = json.loads(raw)
    msgspec.json.decode(raw.encode(), type=Features)  # the spec's shape
    sc = feats["linux"]["seccomp"]
    assert set(sc["supportedFlags"]) <= set(sc["knownFlags"]) and "SECCOMP_FILTER_FLAG_TSYNC" in sc["supportedFlags"]
    assert {"rt.plugin", "rt.net.", "rt.system.", "rt.vm."} <= set(feats["potentiallyUnsafeConfigAnnotations"])
    ann = feats["annotations"]
    assert "app_single" in ann["io.github.rt.plugins"].split(",") and "io.github.rt.plugin.lxc_system" in ann
    assert all(isinstance(v, str) for v in ann.values())
    assert feats["linux"]["apparmor"] == feats["linux"]["selinux"] == {"enabled": True}


def test_default_root_as_runc(monkeypatch):
    from rt.core.cli import default_root
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_root() == "/run/user/1000/rt"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_root() == "/run/rt"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_root() == "/run/rt"


def test_rts_own_verbs_take_flags_after_their_arguments():
    from rt.core.cli import VERBS
    opts, pos = _parse_flags(["bundle", "--runs", "3", "--json"], VERBS["bench"][0], "bench", anywhere=True)
    assert (pos, opts.runs, opts.json) == (["bundle"], 3, True)
    opts, pos = _parse_flags(["id", "--force"], VERBS["delete"][0], "delete")  # runc's: flags first
    assert (pos, opts.force) == (["id", "--force"], False)


def test_plugin_verb_timeout_before_or_after_the_id():
    from rt.plugins.lxc_system.verbs import _timeout_and_id
    assert _timeout_and_id("stop", ["c1", "--timeout", "3"], "u") == ("3", "c1")
    assert _timeout_and_id("stop", ["-t", "3", "c1"], "u") == ("3", "c1")


def test_a_plugin_warning_goes_to_the_log_or_else_to_stderr(tmp_path, capsys):
    from rt.core import log
    try:
        log.configure(None, "text", False)
        log.warn_user("left out: CAP_X")
        assert 'level=warning msg="left out: CAP_X"' in capsys.readouterr().err
        log.configure(str(tmp_path / "log.json"), "json", False)  # runc's rule: --log takes it all
        log.warn_user("left out: CAP_Y")
        assert capsys.readouterr().err == ""
        import json
        record = json.loads((tmp_path / "log.json").read_text())
        assert (record["level"], record["msg"]) == ("warning", "left out: CAP_Y")
    finally:
        log.configure(None, "text", False)
