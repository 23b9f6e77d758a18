"""The house rules, checked on the source itself: which folder may import which, no import cycle between modules,
no file too long to read in one sitting, and no function too long or too branchy to hold in mind (radon's
cyclomatic complexity, as `radon cc -s` prints it)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fomm_core", "fomm_doctor")
MAX_LINES = 50
MAX_COMPLEXITY = 15
MAX_FILE_LINES = 500
# nn.Module forward passes read top to bottom like the paper's figures; splitting them would hide the model
EXEMPT = {("fomm_core/model/blocks.py", "forward"), ("fomm_core/model/dense_motion.py", "forward"),
          ("fomm_core/model/generator.py", "forward"), ("fomm_core/model/keypoint_detector.py", "forward")}

# folder (or module) -> the modules of ours it may import; a prefix allows everything below it
MAY_IMPORT = {
    "fomm_core/model": ("fomm_core.model", "fomm_core.errors", "fomm_core.device", "fomm_core.resources"),
    "fomm_core/media": ("fomm_core.media", "fomm_core.errors", "fomm_core.tools", "fomm_core.private"),
    "fomm_core/inference": ("fomm_core",),
    "fomm_core/train": ("fomm_core",),
    "fomm_core": ("fomm_core",),
    "fomm_doctor/net": ("fomm_doctor.net", "fomm_doctor.errors", "fomm_doctor.oslock", "fomm_doctor.units"),
    "fomm_doctor/oslock.py": (),
    "fomm_doctor/preflight.py": (),
    "fomm_doctor/errors.py": (),
    "fomm_doctor/report.py": (),
    "fomm_doctor/units.py": (),
    "fomm_doctor/animation.py": ("fomm_doctor.errors", "fomm_doctor.checkpoints", "fomm_doctor.checks.common",
                                 "fomm_core"),
    "fomm_doctor/checkpoints": ("fomm_doctor.checkpoints", "fomm_doctor.net", "fomm_doctor.errors",
                                "fomm_doctor.units", "fomm_core"),
    "fomm_doctor/batch": ("fomm_doctor.batch", "fomm_doctor.animation", "fomm_doctor.checkpoints",
                          "fomm_doctor.net", "fomm_doctor.oslock", "fomm_doctor.errors", "fomm_doctor.units",
                          "fomm_core"),
    "fomm_doctor/ui": ("fomm_doctor.ui", "fomm_doctor.animation", "fomm_doctor.checkpoints", "fomm_doctor.checks",
                       "fomm_doctor.net", "fomm_doctor.errors", "fomm_doctor.units", "fomm_core"),
    "fomm_doctor": ("fomm_doctor", "fomm_core"),
}


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(rel: str, text: str):
    """Every module of ours a file imports (relative imports resolved), at any depth of the file."""
    package = rel[:-3].replace("/", ".").rsplit(".", 1)[0]
    if rel.endswith("__init__.py"):
        package = rel[: -len("/__init__.py")].replace("/", ".")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from package import module` imports that module; `from module import name`, the module
            names = [f"{base}.{alias.name}" if not node.module or is_module(f"{base}.{alias.name}") else base
                     for alias in node.names]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def rule_for(rel: str):
    key = max((k for k in MAY_IMPORT if rel == k or rel.startswith(k + "/")), key=len)
    return key, MAY_IMPORT[key]


def test_each_folder_imports_only_what_it_may():
    broken = []
    for rel, text in sources():
        key, allowed = rule_for(rel)
        for name in imported_modules(rel, text):
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                broken.append(f"{rel} imports {name} (files in {key} may import {allowed or 'nothing of ours'})")
    assert not broken, "\n".join(broken)


def test_the_rules_see_a_forbidden_import():
    """The scan itself: a core module importing the doctor, or the preflight importing anything of ours."""
    assert list(imported_modules("fomm_core/media/x.py", "from fomm_doctor.errors import UserError")) == \
        ["fomm_doctor.errors"]
    assert list(imported_modules("fomm_core/model/x.py", "def f():\n    from ..inference import motion")) == \
        ["fomm_core.inference.motion"]
    assert list(imported_modules("fomm_doctor/batch/x.py", "from fomm_doctor import errors")) == \
        ["fomm_doctor.errors"]
    key, allowed = rule_for("fomm_core/model/x.py")
    assert key == "fomm_core/model" and not any("fomm_core.inference".startswith(a) for a in allowed)
    assert rule_for("fomm_doctor/preflight.py") == ("fomm_doctor/preflight.py", ())


def test_no_function_is_too_long_or_too_branchy():
    radon = pytest.importorskip("radon.complexity", reason="radon is in the [test] extra: pip install '.[test]'")
    found = []
    for rel, text in sources():
        for block in radon.cc_visit(text):
            for item in [block, *getattr(block, "methods", [])]:
                if type(item).__name__ != "Function" or (rel, item.name) in EXEMPT:
                    continue
                lines = item.endline - item.lineno + 1
                if lines > MAX_LINES or item.complexity > MAX_COMPLEXITY:
                    found.append(f"{rel}:{item.lineno} {item.fullname}: {lines} lines, complexity "
                                 f"{item.complexity}")
    assert not found, "\n".join(sorted(set(found)))


def module_name(rel: str) -> str:
    name = rel[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def import_graph() -> dict:
    """module -> the modules of ours it imports, at any depth of the file; `from package import name` counts as
    the submodule when `name` is one (the package's own __init__ is not an edge: it runs first either way)."""
    texts = dict(sources())
    modules = {module_name(rel) for rel in texts}
    graph = {}
    for rel, text in texts.items():
        here = module_name(rel)
        package = here if rel.endswith("__init__.py") else here.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[here] = {m for m in edges if m in modules and m != here}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    assert not cycles(import_graph()), "\n".join(" <-> ".join(c) for c in cycles(import_graph()))


def test_the_cycle_finder_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# imports that would undo a layering, whatever MAY_IMPORT allows a folder's parent
FORBIDDEN = {
    "fomm_doctor/ui": ("fomm_doctor.commands",),       # the page and the commands share fomm_doctor.animation
    "fomm_doctor/batch": ("fomm_doctor.commands",),
    "fomm_doctor/net": ("fomm_core",),                 # the network layer knows no model
    "fomm_doctor/install": ("fomm_doctor.checks",),    # probes are given to it by the command
}


def test_no_folder_reaches_across_a_layer():
    broken = []
    for rel, text in sources():
        for folder, banned in FORBIDDEN.items():
            if rel.startswith(folder + "/"):
                broken += [f"{rel} imports {name}" for name in imported_modules(rel, text)
                           if any(name == b or name.startswith(b + ".") for b in banned)]
    assert not broken, "\n".join(broken)


def test_no_file_is_too_long_to_read():
    long = [f"{rel}: {text.count(chr(10))} lines" for rel, text in sources()
            if text.count("\n") > MAX_FILE_LINES]
    assert not long, "\n".join(long)
