"""The house rules, checked on the source itself: which folder may import which, and no function too long or
too branchy to hold in mind (radon's cyclomatic complexity, as `radon cc -s` prints it)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fomm_core", "fomm_doctor")
MAX_LINES = 50
MAX_COMPLEXITY = 15
# nn.Module forward passes read top to bottom like the paper's figures; splitting them would hide the model
EXEMPT = {("fomm_core/model/blocks.py", "forward"), ("fomm_core/model/dense_motion.py", "forward"),
          ("fomm_core/model/generator.py", "forward"), ("fomm_core/model/keypoint_detector.py", "forward")}

# folder (or module) -> the modules of ours it may import; a prefix allows everything below it
MAY_IMPORT = {
    "fomm_core/model": ("fomm_core.model", "fomm_core.errors", "fomm_core.device", "fomm_core.resources"),
    "fomm_core/media": ("fomm_core.media", "fomm_core.errors", "fomm_core.tools"),
    "fomm_core/inference": ("fomm_core",),
    "fomm_core/train": ("fomm_core",),
    "fomm_core": ("fomm_core",),
    "fomm_doctor/net": ("fomm_doctor.net", "fomm_doctor.errors", "fomm_doctor.oslock", "fomm_core.cache"),
    "fomm_doctor/oslock.py": (),
    "fomm_doctor/preflight.py": (),
    "fomm_doctor/errors.py": (),
    "fomm_doctor/report.py": (),
    "fomm_doctor/checkpoints": ("fomm_doctor.checkpoints", "fomm_doctor.net", "fomm_doctor.errors", "fomm_core"),
    "fomm_doctor/batch": ("fomm_doctor.batch", "fomm_doctor.commands", "fomm_doctor.checkpoints", "fomm_doctor.net",
                          "fomm_doctor.oslock", "fomm_doctor.errors", "fomm_core"),
    "fomm_doctor/ui": ("fomm_doctor.ui", "fomm_doctor.commands", "fomm_doctor.checkpoints", "fomm_doctor.checks",
                       "fomm_doctor.net", "fomm_doctor.errors", "fomm_core"),
    "fomm_doctor": ("fomm_doctor", "fomm_core"),
}


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


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
            names = [f"{base}.{alias.name}" if not node.module else base for alias in node.names]
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
    assert list(imported_modules("fomm_core/model/x.py", "def f():\n    from ..inference import engine")) == \
        ["fomm_core.inference"]
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
