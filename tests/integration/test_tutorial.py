"""docs/plugins.md's tutorial, run as written: each file it shows is written, each command run."""
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md")


def tutorial() -> list[tuple[str, str, str]]:
    """(language, file or "", body) of each fenced block in the tutorial section."""
    text = open(DOC).read()
    section = text[text.index("## Tutorial: a plugin from zero"):]
    return [(lang, path or "", body) for lang, path, body in
            re.findall(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", section, re.M | re.S)]


def test_the_tutorial_works_as_written(tmp_path, no_leaks):
    site = tmp_path / "site"  # the plugin is installed here, not into rt's environment
    env = dict(os.environ, PIP_TARGET=str(site), PYTHONPATH=str(site),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    blocks = tutorial()
    assert [lang for lang, _, _ in blocks] == ["toml", "python", "sh", "sh", "sh"]
    outputs = []
    for lang, path, body in blocks:
        if path:
            os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
            (tmp_path / path).write_text(body)
            continue
        for line in body.strip().splitlines():
            p = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900, stdin=subprocess.DEVNULL)
            assert p.returncode == 0, f"{line}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
            outputs.append(p.stdout)
    assert '"name": "hostnet"' in outputs[1]
    summary = outputs[2].strip().splitlines()[-1]
    assert re.search(r"\d+ passed, 2 skipped", summary) and "failed" not in summary, outputs[2][-4000:]
