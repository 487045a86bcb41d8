"""The package's shape, as the README's layout describes it: folders by role in layers, each
importing only from the layers below it (imports inside functions included), no import circle,
and small modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "perceptual_sr"
# Lowest first. The root package (`from perceptual_sr import SRPipeline`) sits above everything it
# re-exports and below the front ends that use it.
LAYERS = ["utils", "hub", "networks", "data", "inference", "evaluation", "video", "training", "", "app", "commands"]
MAX_MODULES_PER_FOLDER = 12
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of package modules, wherever in the file they are."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "perceptual_sr":
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    targets.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "perceptual_sr"}
        graph[name] = targets - {name}
    return graph


def _layer(module: str) -> int:
    if module == "perceptual_sr.__main__":  # `python -m perceptual_sr`: the command line's entry, on top
        return len(LAYERS)
    parts = module.split(".")
    folder = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""
    return LAYERS.index(folder)


def test_every_folder_is_a_known_layer():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == set(LAYERS) - {""}


def test_no_import_runs_up_a_layer():
    graph = _imports(_modules())
    upward = sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                    if _layer(target) > _layer(source))
    assert not upward, upward


def test_no_import_circle():
    graph = _imports(_modules())
    done, on_path, circles = set(), [], []

    def visit(module: str) -> None:
        on_path.append(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                circles.append(on_path[on_path.index(target):] + [target])
            elif target not in done:
                visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    assert not circles, circles


def test_folders_and_modules_stay_small():
    modules = _modules()
    for folder in [PACKAGE, *(PACKAGE / layer for layer in LAYERS if layer)]:
        count = len([path for path in folder.glob("*.py") if path.name != "__init__.py"])
        assert count <= MAX_MODULES_PER_FOLDER, f"{folder.name}/ holds {count} modules"
    long = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    assert not {name: lines for name, lines in long.items() if lines > MAX_MODULE_LINES}
