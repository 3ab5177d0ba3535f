"""The runtime package stands alone: it imports nothing of the development tools, and the
operator's entry point loads without them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_entry_points_import_no_development_module():
    code = ("import sys, dgm_operator.cli, dgm_operator.controller.run, dgm_operator.controller.handlers, "
            "dgm_operator.plugin.kubectl, dgm_operator.grader.evaluate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dgm_dev'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_runtime_distribution_packages_only_the_runtime():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["operator"]
    packages = {p.name for p in (ROOT / "operator").iterdir() if (p / "__init__.py").exists()}
    assert packages == {"dgm_operator"}
    dev = tomllib.loads((ROOT / "devtools" / "pyproject.toml").read_text())
    from dgm_operator import cli
    assert set(dev["project"]["entry-points"]["dgm.commands"]) == set(cli.DEV_COMMANDS)


def test_dev_commands_without_the_dev_tools_say_how_to_get_them(monkeypatch):
    from dgm_operator import cli
    monkeypatch.setattr(cli, "_plugins", lambda: {})
    try:
        cli.resolve("dev-cluster")
    except LookupError as exc:
        assert "pip install -e ./devtools" in str(exc)
    else:
        raise AssertionError("resolve() found a dev command without the dev tools")
    assert cli.main(["demo"]) == 2
