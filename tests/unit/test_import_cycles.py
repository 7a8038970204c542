"""No import circle among the modules under services/, nor in the Python SDK
(clients/python/llmga_client); the checker is tests/support/import_cycles.py."""

from __future__ import annotations

import textwrap

from tests.support.import_cycles import describe, find_cycles, import_graph, imported_modules
from tests.support.processes import REPO_ROOT

KNOWN = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.sub.d"}


def test_find_cycles_on_a_small_graph() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a
        "d": {"e"},
        "e": {"d"},  # d <-> e, reached from the first cycle
        "f": {"f"},  # a module importing itself
        "g": {"a"},  # into a cycle, but on none
    }
    assert find_cycles(graph) == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert describe(find_cycles(graph)).splitlines()[1] == "d <-> e"


def test_find_cycles_none_in_a_tree() -> None:
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_imports_resolved_relative_and_submodules_type_checking_left_out() -> None:
    source = textwrap.dedent(
        """
        import os
        import pkg.a
        from . import d
        from .. import b
        from ..a import something
        from pkg.sub.c import name, other
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from pkg import b as typing_only
        else:
            import pkg

        def later() -> None:
            from pkg.sub import d
        """
    )
    # pkg.sub.c imports itself (`from pkg.sub.c import ...`): not an edge.
    assert imported_modules(source, "pkg.sub.c", False, KNOWN) == {
        "pkg.a",
        "pkg.sub.d",
        "pkg.b",
        "pkg",
    }
    # In a package's __init__, `.` is the package itself.
    assert imported_modules("from . import c\nfrom .d import x", "pkg.sub", True, KNOWN) == {
        "pkg.sub.c",
        "pkg.sub.d",
    }


def test_type_checking_only_imports_make_no_edge() -> None:
    source = "import typing\nif typing.TYPE_CHECKING:\n    import pkg.a\n"
    assert imported_modules(source, "pkg.b", False, KNOWN) == set()


def test_no_import_cycles_in_services() -> None:
    graph = import_graph(REPO_ROOT / "services")
    # The resolver sees the real imports (an empty graph would pass trivially).
    assert "services.gateway.state" in graph["services.gateway.app"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (break them, e.g. move the shared code):\n" + describe(cycles)


def test_no_import_cycles_in_the_python_sdk() -> None:
    graph = import_graph(REPO_ROOT / "clients" / "python" / "llmga_client")
    assert "llmga_client._core" in graph["llmga_client.client"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (break them, e.g. move the shared code):\n" + describe(cycles)
