"""The framework patches of :mod:`taskqueue.api.patches` meet only releases they were written for.

These fail in CI, on a fresh install, the day a pin in ``pyproject.toml`` lets a new release of
a patched framework in, or a release outside the pins is installed: not at a user's start-up.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from taskqueue.api import patches
from taskqueue.api.patches import hypercorn_fixes

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pins() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = (Requirement(text) for text in project["dependencies"])
    return {r.name.lower(): r for r in requirements}


@pytest.mark.parametrize("name", sorted(patches.SUPPORTED))
def test_the_installed_release_of_each_patched_framework_is_supported(name: str) -> None:
    assert version(name).startswith(patches.SUPPORTED[name]), patches.unsupported()


@pytest.mark.parametrize("name", sorted(patches.SUPPORTED))
def test_the_pins_admit_no_release_beyond_the_supported_ones(name: str) -> None:
    specifier = pins()[name].specifier
    supported = patches.SUPPORTED[name]
    newest = Version(supported[-1].rstrip("."))
    # The next minor release (or, for an exact pin, any other) must be refused.
    beyond = Version(f"{newest.major}.{newest.minor + 1}.0")
    assert not specifier.contains(beyond, prereleases=True), specifier
    assert specifier.contains(version(name), prereleases=True)


def test_check_names_an_unsupported_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(patches.SUPPORTED, "hypercorn", ("0.1.",))
    with pytest.raises(RuntimeError, match=r"hypercorn 0\.\d+\.\d+ \(supported: 0\.1\.x\)"):
        patches.check()


def test_the_hypercorn_fix_installs() -> None:
    hypercorn_fixes.install()
    assert hypercorn_fixes.installed()
