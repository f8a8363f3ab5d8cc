"""The locks `make run`, `make test` and the image install from (requirements/*.lock): exact
versions with hashes, one version of a package across them, and every dependency that
pyproject.toml names is in them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)")


def locked(path: Path) -> dict[str, set[str]]:
    """Package -> its pinned versions (more than one only under different Python markers)."""
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        if (m := PIN.match(line)) is not None:
            out.setdefault(canonicalize_name(m.group(1)), set()).add(m.group(2))
    return out


def test_every_pin_is_exact_and_hashed() -> None:
    for path in LOCKS.glob("*.lock"):
        text = path.read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert entries, path
        for entry in entries:
            if entry.startswith("#") or not entry.strip():
                continue
            assert PIN.match(entry), (path.name, entry[:80])
            assert "--hash=sha256:" in entry, (path.name, entry[:80])


def test_the_run_set_is_the_test_set_without_the_tools() -> None:
    dev = locked(LOCKS / "dev.lock")
    runtime = locked(LOCKS / "runtime.lock")
    assert runtime and all(dev[name] == versions for name, versions in runtime.items())


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, dev = locked(LOCKS / "runtime.lock"), locked(LOCKS / "dev.lock")
    for spec in project["dependencies"]:
        req = Requirement(spec)
        assert any(req.specifier.contains(v) for v in runtime[canonicalize_name(req.name)]), spec
    for spec in project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        assert any(req.specifier.contains(v) for v in dev[canonicalize_name(req.name)]), spec
