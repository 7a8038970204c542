"""The locks in deploy/lock/ agree with pyproject.toml and with each other, and this
environment was installed from them (`make install` installs the dev lock).

When pyproject.toml changes, `make lock` re-resolves the locks (deploy/lock/README.md).
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.processes import REPO_ROOT

LOCK_DIR = REPO_ROOT / "deploy" / "lock"
# Each lock file and the extras it resolves (the base dependencies always).
LOCKED_EXTRAS = {
    "dev.txt": ("gateway", "worker", "mllm", "dev"),
    "gateway.txt": ("gateway",),
    "worker.txt": ("worker",),
    "mllm.txt": ("mllm",),
}
# Installed on its own: the CPU build on CI and laptops, a CUDA build in the GPU images.
UNLOCKED = {"torch"}
FIX = "run `make lock` and commit deploy/lock/"


def pins(lock: Path) -> dict[str, str]:
    """`name==version` lines of a lock file, by canonical name."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, sep, version = requirement.partition("==")
            assert sep, f"{lock.name}: {line!r} is not pinned with =="
            found[canonicalize_name(name.split("[", 1)[0])] = version.strip()
    return found


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject.toml's base requirements and those of `extras`."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("lock_name", sorted(LOCKED_EXTRAS))
def test_every_declared_requirement_is_pinned_within_its_range(lock_name: str) -> None:
    locked = pins(LOCK_DIR / lock_name)
    for requirement in declared(LOCKED_EXTRAS[lock_name]):
        name = canonicalize_name(requirement.name)
        if name in UNLOCKED:
            assert str(requirement.specifier).startswith("=="), f"{name} must be pinned"
            continue
        assert name in locked, f"{lock_name} lacks {requirement}: {FIX}"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock_name} pins {name}=={locked[name]}, outside {requirement}: {FIX}"
        )


def test_the_service_locks_use_the_dev_locks_versions() -> None:
    dev = pins(LOCK_DIR / "dev.txt")
    for lock_name in set(LOCKED_EXTRAS) - {"dev.txt"}:
        for name, version in pins(LOCK_DIR / lock_name).items():
            assert dev.get(name) == version, f"{lock_name}: {name}=={version}, dev: {FIX}"


def test_no_lock_pins_torch() -> None:
    for lock_name in LOCKED_EXTRAS:
        assert not UNLOCKED & set(pins(LOCK_DIR / lock_name)), lock_name


def test_this_environment_is_the_dev_lock() -> None:
    mismatched = {}
    for name, version in pins(LOCK_DIR / "dev.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            mismatched[name] = f"locked {version}, installed {installed}"
    assert not mismatched, f"not installed from the lock (run `make install`): {mismatched}"
