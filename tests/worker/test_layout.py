"""The package layout's rules: no import cycles, one job per subpackage, a small root.

The layering itself (which subpackage may import which) is an import-linter contract in
pyproject.toml, checked by ``make lint``; this file checks what import-linter does not.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

import routing
import worker

ROOT = Path(worker.__file__).parent


def _strongly_connected(graph: grimp.ImportGraph) -> Iterator[set[str]]:
    """Tarjan's algorithm over the import graph: each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(module: str) -> Iterator[set[str]]:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                yield from visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            yield group

    for module in sorted(graph.modules):
        if module not in index:
            yield from visit(module)


def import_cycles(*packages: str) -> list[set[str]]:
    """Groups of modules in an import cycle, counting imports made inside functions.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    return [group for group in _strongly_connected(graph) if len(group) > 1]


def test_no_import_cycles_in_worker_or_routing() -> None:
    assert import_cycles("worker", "routing") == []


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def later():\n    from cyclic import a\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        assert import_cycles("cyclic") == [{"cyclic.a", "cyclic.b"}]


def test_the_root_of_worker_stays_small() -> None:
    modules = [path for path in ROOT.glob("*.py")]
    assert len(modules) <= 15, sorted(path.name for path in modules)


@pytest.mark.parametrize(
    "package", [info.name for info in pkgutil.iter_modules([str(ROOT)]) if info.ispkg]
)
def test_every_subpackage_says_its_job_in_one_line(package: str) -> None:
    source = (ROOT / package / "__init__.py").read_text()
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, f"worker/{package}/__init__.py has no docstring"
    assert len(docstring.splitlines()[0]) <= 100


@pytest.mark.parametrize("package", [worker, routing])
def test_every_public_name_imports(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    module = importlib.import_module(package.__name__)  # type: ignore[attr-defined]
    for name in names:
        assert getattr(module, name) is not None, name


def test_import_paths_of_earlier_releases_keep_working() -> None:
    from worker.dead_letters import DeadLetters as OldDeadLetters
    from worker.progress import Progress as OldProgress
    from worker.pytest_plugin import channel_worker as old_fixture
    from worker.send import asend, send, send_on_commit
    from worker.send_errors import SendError as OldSendError
    from worker.sending import api
    from worker.tasks import ChannelLayerBackend as OldBackend
    from worker.testing import drain as old_drain
    from worker.testing import drain_sync as old_drain_sync
    from worker.testing.pytest_plugin import channel_worker

    assert (send, asend, send_on_commit) == (api.send, api.asend, api.send_on_commit)
    assert (OldDeadLetters, OldProgress, OldSendError, OldBackend) == (
        worker.DeadLetters,
        worker.Progress,
        worker.SendError,
        worker.ChannelLayerBackend,
    )
    assert (old_drain, old_drain_sync, old_fixture) == (
        worker.drain,
        worker.drain_sync,
        channel_worker,
    )


def test_worker_send_is_the_function_even_after_its_old_module_is_imported() -> None:
    import worker.send as old_module
    from worker import send
    from worker.sending.api import send as the_function

    # Either spelling sends: the old module is callable with the function's arguments.
    assert callable(old_module)
    assert send is the_function or send is old_module
    assert old_module.send is the_function
