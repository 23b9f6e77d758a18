"""README.md and docs/ as a reader meets them: every link and picture resolves, every docs page is reachable
from the README, the two set-up blocks CI runs are there, the README stays a first look (at most 160 lines),
and every `fomm-doctor ...` command line written in them names a real command and real options."""
import html
import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README] + sorted(DOCS.glob("*.md"))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```")


def prose(text: str) -> str:
    """The text without fenced code blocks (a link inside a code block is not a link)."""
    kept, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept)


def links(page: Path) -> list:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script, digits, '-' and '_'
    kept), each space a '-'."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set:
    return {slug(line.lstrip("#")) for line in prose(page.read_text(encoding="utf-8")).splitlines()
            if re.match(r"#{1,6} ", line)}


def test_slug_follows_githubs_rules():
    assert slug("## `fomm-doctor crop` — the face of a driving video, as the original crop script does".lstrip("#")) \
        == "fomm-doctor-crop--the-face-of-a-driving-video-as-the-original-crop-script-does"
    assert slug("中文说明") == "中文说明"
    assert slug("Precision and speed: the paths") == "precision-and-speed-the-paths"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_picture_exists(page):
    missing = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            missing.append(f"{target} (no such heading)")
    assert not missing, f"{page.name}: {missing}"


def test_every_docs_page_and_picture_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README) if not t.startswith("#")}
    pages = set(DOCS.glob("*.md"))
    assert pages, "docs/ has no page"
    assert not {p for p in pages if p.resolve() not in linked}
    for picture in ("demo-strip.png", "check.svg"):
        assert (DOCS / picture).resolve() in linked


def test_pictures_are_small_and_the_svg_loads_nothing_from_outside():
    for name in ("demo-strip.png", "check.svg", "ui.jpg"):
        assert (DOCS / name).stat().st_size < 300_000, name
    svg = (DOCS / "check.svg").read_text(encoding="utf-8")
    assert "@font-face" not in svg and "url(http" not in svg
    shown = html.unescape(svg).replace("\xa0", " ")  # rich writes each space as &#160;
    assert "fomm-doctor check (offline)" in shown and "python.version" in shown


def readme_block(marker: str) -> str:
    """The first fenced block after the marker line, as .ci/run reads it."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    fences = [i for i in range(start + 1, len(lines)) if FENCE.match(lines[i])]
    return "\n".join(lines[fences[0] + 1:fences[1]]).strip()


def test_the_ci_blocks_install_prove_and_test():
    install = readme_block("<!-- ci:install -->")
    assert "pip install ." in install and "fomm-doctor install" in install and "fomm-doctor demo" in install
    tests = readme_block("<!-- ci:test -->")
    assert "pip install" in tests and "pytest" in tests


def test_readme_is_a_first_look_with_the_chinese_section_linked_at_the_top():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160
    assert "[中文说明](#中文说明)" in "\n".join(lines[:5])
    assert "## 中文说明" in lines


# -- command lines -------------------------------------------------------------------------------------------------

def code(text: str) -> list:
    """The lines of fenced code blocks (a `\\` continuation joined to its line) and the inline code spans."""
    lines, inside = [], False
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines + re.findall(r"`([^`\n]+)`", prose(text))


def command_lines(text: str) -> list:
    """Every `fomm-doctor ...` invocation in code, cut at a comment, `&&`, `|` or `;`, as token lists starting
    after 'fomm-doctor'."""
    found = []
    for chunk in code(text):
        for match in re.finditer(r"(?:^|\s)fomm-doctor((?:\s+[^\s#&|;`]+)*)", chunk):
            tokens = shlex.split(match.group(1), posix=False)
            if tokens:
                found.append(tokens)
    return found


def known_options(group, tokens) -> tuple:
    """(the command path, its option names) for tokens like ['checkpoints', 'fetch', 'vox', '--dir', 'x']."""
    command, path = group, []
    for token in tokens:
        if token in getattr(command, "commands", {}):  # a group (typer carries its own copy of click)
            command, path = command.commands[token], path + [token]
        else:
            break
    names = {"--help"}
    for param in command.params:
        names.update(param.opts + param.secondary_opts)
    return path, names


def test_every_command_line_shown_names_a_real_command_and_real_options():
    import typer.main
    from fomm_doctor.cli import app
    group = typer.main.get_command(app)
    wrong, seen = [], 0
    for page in PAGES:
        for tokens in command_lines(page.read_text(encoding="utf-8")):
            path, names = known_options(group, tokens)
            if not path and tokens[0] not in ("--version", "--help"):
                wrong.append(f"{page.name}: fomm-doctor {tokens[0]} (no such command)")
                continue
            seen += 1
            for flag in (t.split("=")[0] for t in tokens if t.startswith("-")):
                if flag not in names:
                    wrong.append(f"{page.name}: fomm-doctor {' '.join(path)} {flag} (no such option)")
    assert seen > 50 and not wrong, wrong
