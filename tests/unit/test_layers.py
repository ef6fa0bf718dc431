"""The layers hold: every import in every module of the package, read with ``ast`` (at module
level, inside functions and behind ``if TYPE_CHECKING``), points down the layers.

    core  <  workflow  <  ui, cli          (the package root, api and selftest sit above all)

- ``inspector.core`` imports no Qt and nothing of workflow, ui or cli;
- ``inspector.workflow`` imports no Qt and nothing of ui or cli;
- ui and cli do not import each other, except the cases in :data:`ALLOWED`, each with its reason;
- no layer imports the package root ``inspector`` itself (``from inspector import __version__``):
  the root is an entry point above the layers (the version lives in ``inspector.core.version``).

A layer that does not exist yet (the workflow layer on an older branch) is simply not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import pytest

import inspector

PACKAGE_DIR = Path(inspector.__file__).resolve().parent

#: rank of each layer; an import may only go to a layer of lower or equal rank (ui and cli share one)
LAYERS = {"core": 0, "workflow": 1, "ui": 2, "cli": 2}
#: module-name prefixes that mean Qt (the binding, its helper, and Qt-based plotting)
QT_MODULES = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy", "pyqtgraph")
QT_FREE_LAYERS = ("core", "workflow")
#: (importing module, imported module or package) pairs that cross between ui and cli on purpose
ALLOWED = {
    ("inspector.cli.app_cmds", "inspector.ui.app"): "`inspector gui` (and no command) starts the desktop app",
    ("inspector.cli", "inspector.selftest"): "`inspector --self-test` runs the self-test, which drives the app",
}


def module_name(path: Path, package_dir: Path, package: str) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path, package_dir: Path, package: str) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file, wherever it stands, and of
    every ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, package_dir, package)
    own_package = here if _is_package(path) else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = own_package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from inspector import core` imports a module; `from inspector import __version__` the root
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if _names_module(candidate, package_dir, package) else source
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def _names_module(name: str, package_dir: Path, package: str) -> bool:
    if not (name == package or name.startswith(package + ".")):
        return False
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    target = package_dir / relative
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def layer_of(name: str, package: str) -> Optional[str]:
    parts = name.split(".")
    if parts[0] != package or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _allowed(importer: str, imported: str) -> bool:
    for (who, what) in ALLOWED:
        if (importer == who or importer.startswith(who + ".")) and (imported == what or imported.startswith(what + ".")):
            return True
    return False


def layer_violations(package_dir: Path, package: str = "inspector") -> list[str]:
    """One line per import that points the wrong way, as ``path:line: importer -> imported (rule)``."""
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        importer = module_name(path, package_dir, package)
        layer = layer_of(importer, package)
        if layer is None:
            continue  # the root, api, selftest, __main__: entry points above every layer
        for line, imported in imported_modules(path, package_dir, package):
            where = f"{path.relative_to(package_dir.parent)}:{line}: {importer} -> {imported}"
            top = imported.split(".")[0]
            if layer in QT_FREE_LAYERS and top in QT_MODULES:
                problems.append(f"{where} (the {layer} layer never imports Qt)")
                continue
            if top != package or _allowed(importer, imported):
                continue
            target = layer_of(imported, package)
            if target is None:
                problems.append(f"{where} (a layer never imports the package root or its entry points)")
            elif target != layer and LAYERS[target] >= LAYERS[layer]:
                problems.append(f"{where} ({layer} must not import {target})")
    return problems


# ----------------------------------------------------------------------------- the real package
def test_the_package_keeps_its_layers():
    assert (PACKAGE_DIR / "core").is_dir() and (PACKAGE_DIR / "ui").is_dir()
    assert layer_violations(PACKAGE_DIR) == []


def test_every_allowed_crossing_is_still_used():
    """An exception nobody needs any more is removed from :data:`ALLOWED`, not kept as a hole."""
    used = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        importer = module_name(path, PACKAGE_DIR, "inspector")
        for _line, imported in imported_modules(path, PACKAGE_DIR, "inspector"):
            used |= {pair for pair in ALLOWED if importer.startswith(pair[0]) and imported.startswith(pair[1])}
    assert used == set(ALLOWED)


# ----------------------------------------------------------------------------- the check itself
def _tree(root: Path, files: dict[str, str]) -> Path:
    package_dir = root / "inspector"
    for relative, text in files.items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in [package_dir, *[p for p in package_dir.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return package_dir


CLEAN = {
    "core/store.py": "import sqlite3\nimport numpy as np\n",
    "core/learning/learner.py": "from inspector.core import store\nfrom . import metrics\n",
    "core/learning/metrics.py": "from inspector.core.version import __version__\n",
    "core/version.py": "__version__ = '1'\n",
    "ui/view.py": "from PySide6.QtWidgets import QWidget\nfrom inspector.core.store import Project\n",
    "cli/commands.py": "from inspector.core import store\n",
    "cli/app_cmds.py": "def run():\n    from inspector.ui.app import run\n",
    "ui/app.py": "",
}


def test_a_clean_tree_without_a_workflow_layer_passes(tmp_path):
    assert layer_violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("relative, text, expected", [
    # Qt in the core, hidden inside a function
    ("core/images.py", "def show():\n    from PySide6.QtGui import QImage\n", "never imports Qt"),
    ("core/plots.py", "import pyqtgraph as pg\n", "never imports Qt"),
    ("workflow/labelling.py", "from PySide6 import QtCore\n", "never imports Qt"),
    # a lower layer importing a higher one
    ("core/report.py", "from inspector.ui.dashboard import DashboardView\n", "core must not import ui"),
    ("core/learning/learner.py", "from inspector.core import store\nimport inspector.workflow.jobs\n",
     "core must not import workflow"),
    ("core/export.py", "def f():\n    from inspector.cli.common import print_json\n", "core must not import cli"),
    ("workflow/session.py", "from inspector.ui import workers\n", "workflow must not import ui"),
    ("workflow/jobs.py", "from ..cli import common\n", "workflow must not import cli"),  # relative, two levels
    ("core/learning/strategies.py", "from ...ui import theme\n", "core must not import ui"),
    # ui and cli import each other only where ALLOWED says
    ("ui/main_window.py", "from inspector.cli.project_cmds import import_folder_labels\n", "ui must not import cli"),
    ("cli/learning_cmds.py", "from inspector.ui.session import ProjectSession\n", "cli must not import ui"),
    # the package root is above every layer
    ("core/modelfile.py", "def header():\n    import inspector\n", "package root"),
    ("core/report.py", "from inspector import __version__\n", "package root"),
    ("ui/about.py", "from inspector.selftest import run_self_test\n", "package root"),
    # a string import is still an import
    ("core/loader.py", "import importlib\nimportlib.import_module('inspector.ui.gallery')\n",
     "core must not import ui"),
    ("core/checks.py", "if False:\n    import typing\nelse:\n    from inspector.workflow import jobs\n",
     "core must not import workflow"),
])
def test_a_violation_is_found_and_named(tmp_path, relative, text, expected):
    files = dict(CLEAN)
    files["workflow/jobs.py"] = "from inspector.core import store\n"
    files[relative] = text
    for existing in ("ui/dashboard.py", "ui/workers.py", "ui/theme.py", "ui/gallery.py", "ui/session.py",
                     "cli/common.py", "cli/project_cmds.py", "selftest.py"):
        files.setdefault(existing, "")
    problems = layer_violations(_tree(tmp_path, files))
    assert len(problems) == 1, problems
    assert expected in problems[0] and relative.split("/")[-1] in problems[0]


def test_the_allowed_crossings_are_exactly_the_listed_ones(tmp_path):
    files = dict(CLEAN)
    files["cli/team_cmds.py"] = "def gui():\n    from inspector.ui.app import run\n"  # same target, other module
    problems = layer_violations(_tree(tmp_path, files))
    assert len(problems) == 1 and "team_cmds" in problems[0] and "cli must not import ui" in problems[0]
