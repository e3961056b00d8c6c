"""The framework's modules import each other without cycles, counting the imports
inside functions (a function-level import hides a cycle; it does not remove it)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "properties"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The framework modules ``path`` imports anywhere (top level or in a function),
    except under ``if TYPE_CHECKING:`` (never executed)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from properties import runner" imports properties.runner.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_the_framework_has_no_import_cycles():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    # A package's __init__ only re-exports lazily (properties) or registers its
    # modules (properties.catalogue): importing a submodule runs the package,
    # which is not an edge from the submodule.
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycles.append(" -> ".join(stack[stack.index(name):] + [name]))
            return
        for target in sorted(graph[name]):
            if not name.startswith(target + "."):  # a submodule "importing" its own package
                visit(target, stack + [name])

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "import cycles among the framework's modules:\n" + "\n".join(sorted(set(cycles)))


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    # The detector itself: the old registry -> catalogue import inside a function is a cycle.
    source = "def registered():\n    import properties.catalogue\n"
    path = tmp_path / "registry.py"
    path.write_text(source)
    assert _imports(path, {"properties.catalogue"}) == {"properties.catalogue"}
