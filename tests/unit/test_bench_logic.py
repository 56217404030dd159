"""`rt bench`'s own logic, without containers: statistics, the table's statuses, the
not-applicable and failure paths, and cleanup when interrupted."""
import json
import sys

import pytest

from rt.core.bench import report
from rt.core.bench.runner import Bench, Ctx, load_config
from rt.core.bench.stats import fmt, summarize
from rt.core.bench.targets import BenchTarget, Failed, NotApplicable, pids_naming
from rt.core.errors import RtError


def test_summary_min_median_and_interquartile_spread():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["n"], s["min"], s["median"], s["max"]) == (5, 1.0, 3.0, 5.0)
    assert (s["p25"], s["p75"], s["spread"]) == (2.0, 4.0, 2.0)
    assert summarize([]) is None
    one = summarize([7.0])
    assert one["spread"] == 0 and one["median"] == 7.0
    assert fmt(s) == "1.0 / 3.0 ±2.0" and fmt(None) == "-"


class Fake(BenchTarget):
    """Records what the runner asks of it; `fail` and `interrupt` pick where it breaks."""

    def __init__(self, name, level="app", *, fail=(), interrupt_at=None, unavailable=None, na=None):
        self.name, self.level = name, level
        self.fail, self.interrupt_at, self.unavailable, self.na = set(fail), interrupt_at, unavailable, na
        self.running, self.cleaned, self.calls = set(), [], 0

    def available(self):
        return self.unavailable

    def prepare(self, ctx):
        if self.na:
            raise NotApplicable(self.na)

    def _step(self, what):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if what in self.fail:
            raise Failed(f"{what} broke")

    def up(self, ctx, iid):
        self.running.add(iid)
        self._step("up")

    def roundtrip(self, ctx, iid):
        self._step("roundtrip")

    def exec(self, ctx, iid):
        raise NotApplicable("no agent")

    def down(self, ctx, iid):
        self._step("down")
        self.running.discard(iid)

    def memory(self, ctx, iid):
        return {"total_kib": 1024 * len(self.running), "helper_pss_kib": 0, "cgroup_kib": 1024}

    def cleanup(self, ctx, iid):
        self.cleaned.append(iid)
        self.running.discard(iid)


def ctx(tmp_path):
    return Ctx(str(tmp_path), {"root": {"path": str(tmp_path)}}, str(tmp_path), idle=["sleep", "9"],
               true=["true"], init=["/sbin/init"], rt_argv=["rt"])


def bench(*targets, runs=3, density=2):
    b = Bench(runs=runs, density=density, window=60, progress=lambda m: None)
    for t in targets:
        b.add(t)
    return b


def test_statuses_and_metrics(tmp_path):
    good, skipped = Fake("good"), Fake("gone", unavailable="gone is not installed")
    na, broken = Fake("vm", "vm", na="cannot join the host's network namespace"), Fake("bad", fail={"up"})
    results = {r.target.name: r for r in bench(good, skipped, na, broken).run(ctx(tmp_path))}
    assert results["good"].status == "ok"
    assert len(results["good"].samples["up"]) == 3 and len(results["good"].samples["roundtrip"]) == 3
    assert results["good"].na == {"exec": "no agent"}
    assert results["good"].density["started_in_window"] == 2
    assert [p["count"] for p in results["good"].density["curve"]] == [1, 2]
    assert (results["gone"].status, results["gone"].note) == ("skipped", "gone is not installed")
    assert results["vm"].status == "not applicable"
    # `up` fails every time, but the one-shot runs still happen: one failure does not abort the rest
    assert results["bad"].errors["up"] == "up broke" and len(results["bad"].samples["roundtrip"]) == 3
    assert not good.running and not broken.running


def test_table_and_json_say_why(tmp_path):
    targets = [Fake("good"), Fake("gone", unavailable="gone is not installed"),
               Fake("vm", "vm", na="cannot join the host's network namespace"),
               Fake("worse", fail={"up", "roundtrip", "down"})]
    results = bench(*targets, runs=2, density=0).run(ctx(tmp_path))
    doc = {"runs": 2, "targets": [r.to_json() for r in results]}
    json.dumps(doc)  # all of it serializable
    text = report.table(doc)
    assert "skipped: gone is not installed" in text
    assert "not applicable: cannot join the host's network namespace" in text
    assert "failed: " in text and "up: up broke" in text
    assert "good: exec not applicable: no agent" in text
    assert "n/a" in text


def test_interrupt_cleans_every_instance(tmp_path):
    # Interrupted in the middle of the density ramp, with instances up in two targets.
    a, b = Fake("a", interrupt_at=None), Fake("b", interrupt_at=None)
    bn = bench(a, b, runs=1, density=5)
    orig = bn.density

    def density_then_interrupt(r, c):
        if r.target is b:
            for _ in range(2):
                iid = bn._iid(b)
                bn.live.append((b, iid))
                b.up(c, iid)
            raise KeyboardInterrupt
        orig(r, c)
    bn.density = density_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        bn.run(ctx(tmp_path))
    assert not a.running and not b.running
    assert not bn.live


def test_interrupt_inside_a_target_call(tmp_path):
    t = Fake("t", interrupt_at=4)  # up, down, roundtrip, then the second run's up
    with pytest.raises(KeyboardInterrupt):
        bench(t, runs=3).run(ctx(tmp_path))
    assert not t.running and t.cleaned


def test_bundle_errors(tmp_path):
    with pytest.raises(RtError, match="cannot read config.json"):
        load_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"root": {"path": "nope"}}))
    with pytest.raises(RtError, match="rootfs .* does not exist"):
        load_config(str(tmp_path))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(RtError, match="not JSON"):
        load_config(str(tmp_path))
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    assert load_config(str(tmp_path))["root"]["path"] == str(tmp_path / "rootfs")


def test_host_namespace_path_is_not_applicable_in_a_vm(tmp_path):
    cfg = {"ociVersion": "1.2.0", "root": {"path": str(tmp_path)}, "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
           "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}]}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    c = ctx(tmp_path)
    with pytest.raises(NotApplicable, match="cannot join the host's network namespace"):
        c.check_plugin("hypervisor_kvm", str(tmp_path))
    c.check_plugin("app_single", str(tmp_path))  # fine where a host namespace can be joined


def test_charts_or_a_hint(tmp_path, monkeypatch):
    results = bench(Fake("a"), Fake("b", "vm"), runs=2, density=2).run(ctx(tmp_path))
    doc = {"runs": 2, "targets": [r.to_json() for r in results]}
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert report.charts(doc, str(tmp_path)) == report.CHART_HINT
    monkeypatch.undo()
    pytest.importorskip("matplotlib", reason="the rt[bench] extra (scripts/setup installs it)")
    written = report.charts(doc, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["latency.png", "latency.svg", "memory.png", "memory.svg"]
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "memory.svg").read_bytes()[:500]


def _started(argv):
    """Popen, then wait for the new image's argv: exec closes the cloexec pipe that
    Popen waits on before the kernel sets the arguments up, so /proc/PID/cmdline
    can read empty for a moment after Popen returns."""
    import subprocess
    import time
    p = subprocess.Popen(argv)
    want = "\0".join(argv).encode()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            if f.read().rstrip(b"\0") == want:
                return p
        time.sleep(0.005)
    p.kill()
    p.wait()
    raise AssertionError(f"{argv} never showed its arguments in /proc")


def test_helpers_are_found_by_whole_word(tmp_path):
    p = _started(["sleep", "30"])  # a process that names no instance
    try:
        assert p.pid not in pids_naming("rtbench-1-app-1")
    finally:
        p.kill()
        p.wait()
    q = _started(["sh", "-c", "sleep 30", "rtbench-1-app-12"])
    try:
        assert q.pid in pids_naming("rtbench-1-app-12")
        assert q.pid not in pids_naming("rtbench-1-app-1")
    finally:
        q.kill()
        q.wait()


@pytest.mark.parametrize("args, msg", [
    (["--runs", "0"], "--runs must be at least 1"),
    (["--runs", "many"], "must be an integer"),
    (["--window", "soon"], "positive number of seconds"),
    (["--window", "0"], "positive number of seconds"),
    (["--density", "-1"], "--density must be 0"),
    (["--command", ""], "--command must not be empty"),
    (["--frobnicate"], "flag provided but not defined: --frobnicate"),
    (["a", "b"], "one bundle"),
])
def test_bench_options_are_checked(args, msg, capsys):
    from rt.core import cli
    assert cli.main(["bench", *args]) == 1
    assert msg in capsys.readouterr().err


def test_bench_help_lists_its_flags(capsys):
    from rt.core import cli
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--plugins", "--peers", "--runs", "--json", "--output", "--density", "--window"):
        assert flag in out


def test_the_instance_cgroup_is_the_level_that_names_it():
    from rt.core.bench.targets import instance_path
    assert instance_path("/rt/rtbench-9-system-3/init.scope", "rtbench-9-system-3") == "/rt/rtbench-9-system-3"
    assert instance_path("/lxc.payload.rtbench-9-system-4/system.slice/ssh.service",
                         "rtbench-9-system-4") == "/lxc.payload.rtbench-9-system-4"
    assert instance_path("/rtbench-9-app-1", "rtbench-9-app-1") == "/rtbench-9-app-1"  # runc
    assert instance_path("/user.slice", "rtbench-9-app-1") == "/user.slice"  # not ours: as it is
