"""`install --persist`: write the chosen mirror into the user's pip config file (the one `pip config --user`
writes on this platform), so later `pip install`s use it too. Shows the change first; running it again
changes nothing.
"""
import configparser
import difflib
import os
import tempfile
from pathlib import Path
from typing import Optional

from fomm_doctor.errors import UserError
from fomm_doctor.redact import redact
from fomm_doctor.install.pip_config import user_config_file


def persist_change(index_url: str, platform_facts: dict) -> dict:
    """What --persist would do -> {"path", "before", "after", "changed"}; `before`/`after` are the file texts."""
    path = Path(user_config_file(platform_facts))
    before = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(before)
    except configparser.Error as exc:
        raise UserError(f"{path} is not a readable pip config file ({str(exc).splitlines()[0]}); fix or move it, "
                        f"then run --persist again.") from None
    section = dict(parser.items("global")) if parser.has_section("global") else {}
    current = section.get("index-url") or section.get("index_url")
    if current == index_url:
        return {"path": str(path), "before": before, "after": before, "changed": False}
    settings = [("index-url", index_url)]
    host = _host(index_url)
    if host and index_url.startswith("http://"):
        settings.append(("trusted-host", host))  # pip refuses plain-http indexes otherwise
    return {"path": str(path), "before": before, "after": set_in_global(before, settings), "changed": True}


def set_in_global(text: str, settings: list) -> str:
    """Set keys in the [global] section by editing lines, so the user's comments and layout survive."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip().lower() == "[global]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        return "\n".join(lines + ["[global]"] + [f"{k} = {v}" for k, v in settings]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for key, value in settings:
        hit = next((i for i in range(start + 1, end)
                    if lines[i].split("=", 1)[0].strip().lower().replace("_", "-") == key), None)
        if hit is None:
            lines.insert(start + 1, f"{key} = {value}")
            end += 1
        else:
            lines[hit] = f"{key} = {value}"
    return "\n".join(lines) + "\n"


def _host(url: str) -> Optional[str]:
    from urllib.parse import urlsplit
    return urlsplit(url).hostname


def describe_change(change: dict) -> str:
    """The changed lines of the config file, diff style (credentials masked)."""
    if not change["changed"]:
        return f"{change['path']} already sets this index; nothing to change."
    lines = [f"{change['path']}" + ("" if change["before"] else " (new file)") + ":"]
    for line in difflib.ndiff(change["before"].splitlines(), change["after"].splitlines()):
        if line[:2] in ("- ", "+ "):
            key, sep, value = line[2:].partition("=")
            lines.append(f"  {line[0]} {key.strip()}{' = ' + redact(value.strip()) if sep else ''}")
    return "\n".join(lines)


def apply_change(change: dict) -> None:
    """Write the new text atomically (temp file in the same folder, then rename)."""
    if not change["changed"]:
        return
    path = Path(change["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pip-conf-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(change["after"])
    os.replace(tmp, path)
