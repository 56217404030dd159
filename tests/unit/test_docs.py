"""Every hook and every public API name is documented (datasette's test_docs idea)."""
import inspect
import os
import re

from rt.core import api, hookspecs

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md")


def test_every_hook_is_documented():
    text = open(DOCS).read()
    hooks = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("rt_")]
    assert hooks, "no hookspecs found"
    for name in hooks:
        assert re.search(rf"^### `?{name}\b", text, re.M), f"hook {name} has no section in docs/plugins.md"
        assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"


def test_every_public_api_name_is_documented():
    text = open(DOCS).read()
    for name in api.__all__:
        assert f"`{name}" in text, f"rt.core.api.{name} is not mentioned in docs/plugins.md"
        getattr(api, name)  # and it resolves


def test_the_plan_reference_is_generated_from_the_structs():
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(DOCS), "..", "scripts", "gen-plan-doc")
    p = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
