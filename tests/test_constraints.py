"""Reproducible installs: ``constraints.txt`` pins every dependency that ``pyproject.toml`` names (extras
included) at a version its range allows, every range is capped below the next major release, and CI and the
README install through the constraints. The drift script's comparison is checked on its own."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("im-data")]
    return reqs


def _script():
    spec = importlib.util.spec_from_file_location("update_constraints", REPO / "scripts" / "update_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_is_pinned_within_its_range():
    pins = _script().parse((REPO / "constraints.txt").read_text())
    assert len(pins) > 50  # the whole tree, not only our direct dependencies
    for req in _requirements():
        name = _name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert Version(pins[name]) in req.specifier, f"{req.name}=={pins[name]} is outside {req.specifier}"


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.name)
def test_every_range_is_capped_below_the_next_major(req):
    uppers = [s for s in req.specifier if s.operator == "<"]
    lowers = [s for s in req.specifier if s.operator == ">="]
    assert uppers and lowers, f"{req}: needs a lower bound and a cap below the next major"
    assert Version(uppers[0].version).release[1:] in ((), (0,), (0, 0)), f"{req}: cap at a major release"


def test_constraints_have_no_local_version_labels():
    for line in (REPO / "constraints.txt").read_text().splitlines():
        assert "+" not in line.split("#", 1)[0], f"{line}: a local label (+cpu) pins a build other hosts lack"


def test_ci_and_the_readme_install_through_the_constraints():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r'^pip install -q -c constraints\.txt torch==[\d.]+ -e "\.\[test\]" && python -m pytest -q$',
                     ci, re.M), ci
    readme = (REPO / "README.md").read_text()
    assert 'pip install -c constraints.txt torch==2.13.0 -e ".[test]" && python -m pytest -q' in readme
    assert "pip install -c constraints.txt torch==2.13.0 -e . && im-data prepare" in readme


def test_drift_lists_every_changed_added_and_removed_package():
    script = _script()
    old = script.parse("# header\napache-beam==2.77.0\nnumpy==2.4.6\nold-pkg==1.0  # comment\n")
    assert old == {"apache-beam": "2.77.0", "numpy": "2.4.6", "old-pkg": "1.0"}
    new = script.parse("Apache_Beam==2.78.0\nnumpy==2.4.6\nnew.pkg==0.1\n")
    assert script.drift(old, new) == ["  apache-beam: 2.77.0 -> 2.78.0", "  new-pkg: (absent) -> 0.1",
                                      "  old-pkg: 1.0 -> (absent)"]
    assert script.drift(new, new) == []
    text = script.render({"numpy": "2.4.6", "apache-beam": "2.78.0"}, "3.11.7")
    assert text.startswith("# The exact versions") and text.endswith("apache-beam==2.78.0\nnumpy==2.4.6\n")
    assert script.parse(text) == {"numpy": "2.4.6", "apache-beam": "2.78.0"}
