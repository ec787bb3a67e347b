"""The allocator setting that sparse execution relies on: applied on glibc, skipped
elsewhere, and made by the CLI for its own process before a command runs."""

from __future__ import annotations

import platform

import pytest

from sparsecircuits import allocator, cli


def test_it_applies_on_glibc_and_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert allocator.retain_freed_memory() is on_glibc
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.retain_freed_memory() is False
    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    assert allocator.retain_freed_memory() is False


def test_the_cli_sets_it_before_the_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    order = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: order.append("retain") or True)
    assert cli.main(["tasks", "list"]) == 0 and order == ["retain"]
    assert "bracket_brace" in capsys.readouterr().out
    assert cli.main(["tasks", "--help"]) == 0 and order == ["retain"]  # help exits before any command runs
