"""The console scripts declared in pyproject.toml resolve to the project's commands.

Read from pyproject.toml rather than from the installed metadata: an editable install
made before a script was declared would not list it."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint

import pytest

from services.gateway.http import apikeys
from services.gateway.routing import cli as router_cli
from tests.support.processes import REPO_ROOT


def console_scripts() -> dict[str, str]:
    """`[project.scripts]` of pyproject.toml: name -> 'module:function'."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        scripts: dict[str, str] = tomllib.load(file)["project"]["scripts"]
    return scripts


def load_script(name: str) -> object:
    """What the installed script `name` would call, resolved as the installer does."""
    return EntryPoint(name=name, value=console_scripts()[name], group="console_scripts").load()


def test_llmga_keys_is_the_apikeys_command() -> None:
    assert load_script("llmga-keys") is apikeys.main


def test_llmga_keys_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    main = load_script("llmga-keys")
    assert callable(main)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert all(
        command in usage
        for command in ("create", "revoke", "rate-limit", "webhook-secret", "webhook-hosts")
    )


def test_llmga_keys_rejects_a_bad_rate_limit_before_touching_redis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        apikeys.main(["create", "--tenant", "acme", "--rate-limit", "many"])
    assert exit_info.value.code == 2
    assert "is not N/S" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["webhook-secret", "--tenant", "a:b"],
        ["webhook-hosts", "--tenant", "a b", "--list"],
        ["webhook-hosts", "--tenant", "acme", "--add", "https://hooks.acme.com/x"],
        ["webhook-hosts", "--tenant", "acme", "--add", "h", "--remove", "h"],
    ],
)
def test_llmga_keys_webhook_commands_reject_bad_input_before_touching_redis(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMGA_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    with pytest.raises(SystemExit) as exit_info:
        apikeys.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().out == ""


def test_llmga_router_is_the_router_command() -> None:
    assert load_script("llmga-router") is router_cli.main
