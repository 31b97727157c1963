"""The house rules of docs/architecture.md, checked on the source: stages meet only in vreserve/
(and Kafka / the database), and functions fit on a screen.

Both checks parse every module with ``ast`` (imports inside functions count too). The lists of
exceptions name the work in flight that removes them; an entry that no longer matches anything
fails the test, so the lists only shrink.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The stages: each a top-level package that talks to the others only through vreserve/, Kafka
#: and the database.
STAGES = {"ingest", "stream", "dispatcher", "optimizer", "simulators", "supervision", "deploy", "api",
          "console", "bench", "demo"}
#: Orchestration packages run the stages together (the demo, the benchmarks): they may import any stage.
ORCHESTRATION = {"demo", "bench"}
#: The optimizer is the model library (pure: a scenario in, a plan out); any stage may call its
#: public API, the names exported by ``optimizer/__init__.py`` (``from optimizer import ...``).
LIBRARY_API = {"optimizer"}
#: (importing file, imported module): the one composition the web front door does, like the CLI
#: root does by name: the API serves the console at / through the console's own mount function.
ALLOWED = {
    ("api/app.py", "console.routes"),
}
#: Cross-stage imports that work in flight removes (owner in the comment); the lead shrinks this.
PENDING: set[tuple[str, str]] = set()

#: Functions over MAX_LINES that their owners are splitting (issue 12); the lead shrinks this.
MAX_LINES = 80
LONG_PENDING: set[str] = set()


def _modules() -> list[Path]:
    """The project's modules. Skipped directories are pruned before they are entered: the services'
    state (``.vr/``, Kafka deleting segment directories while the suite runs) must not be walked."""
    skip = {"tests", "node_modules", ".venv", ".vr", "out", "build"}
    found: list[Path] = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        found += [Path(top) / f for f in files if f.endswith(".py") and not f.startswith(".")]
    return sorted(found)


def _imports(tree: ast.AST) -> list[str]:
    """Every absolute module name a file imports, wherever the import statement is."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def cross_stage_imports() -> set[tuple[str, str]]:
    """(file, module) for each import of another stage's module that the rules do not allow."""
    found = set()
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        home = rel.split("/")[0]
        if home in ORCHESTRATION or (home not in STAGES and home != "vreserve"):
            continue
        for module in _imports(ast.parse(path.read_text(), rel)):
            top = module.split(".")[0]
            if top not in STAGES or top == home or module in LIBRARY_API:
                continue
            found.add((rel, module))
    return found - ALLOWED


def long_functions() -> dict[str, int]:
    """``file:function`` -> lines, for every function longer than MAX_LINES outside tests/."""
    out = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    out[f"{rel}:{node.name}"] = lines
    return out


def test_no_stage_imports_another_stage():
    found = cross_stage_imports()
    unexpected = sorted(found - PENDING)
    assert not unexpected, ("stages meet only in vreserve/ (docs/architecture.md); move the shared code "
                            f"there: {unexpected}")
    stale = sorted(PENDING - found)
    assert not stale, f"these imports are gone: remove them from PENDING: {stale}"


def test_shared_code_does_not_depend_on_a_stage():
    found = sorted((f, m) for f, m in cross_stage_imports() if f.startswith("vreserve/"))
    assert not found, f"vreserve/ is what every stage shares; it imports no stage: {found}"


def test_no_function_longer_than_a_screen():
    found = long_functions()
    unexpected = {k: v for k, v in found.items() if k not in LONG_PENDING}
    assert not unexpected, f"functions over {MAX_LINES} lines (split them): {unexpected}"
    stale = sorted(LONG_PENDING - set(found))
    assert not stale, f"these functions are short now: remove them from LONG_PENDING: {stale}"


def test_the_checks_see_a_violation(tmp_path):
    """The parser finds imports inside functions and measures a long function (the checks can fail)."""
    src = "def f():\n    from ingest.registry import x\n" + "    y = 1\n" * 90
    tree = ast.parse(src)
    assert "ingest.registry" in _imports(tree)
    fn = tree.body[0]
    assert fn.end_lineno - fn.lineno + 1 > MAX_LINES
