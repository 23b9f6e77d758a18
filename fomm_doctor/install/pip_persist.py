"""`install --persist`: write the chosen mirror into the user's pip config file (the one `pip config --user`
writes on this platform), so later `pip install`s use it too. Shows the change first; running it again
changes nothing.

The file is edited line by line, so the user's comments, layout, line endings and encoding survive, and the
edit follows pip's own reading of the file (see pip_config: `key = value` or `key: value`, any case, `-` or
`_`; [install] beats [global]; [DEFAULT] feeds both). The result is parsed again the way pip parses it and
checked to give exactly the intended settings before anything is written; a file pip would refuse is never
written.
"""
import configparser
import difflib
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import UserError
from fomm_doctor.net.redact import redact
from fomm_doctor.install.pip_config import (install_settings, parse_like_pip, pip_key, read_config_file,
                                            split_lines, user_config_file)

_SECTION = configparser.RawConfigParser.SECTCRE
_OPTION = configparser.RawConfigParser.OPTCRE
_NONSPACE = configparser.RawConfigParser.NONSPACECRE
_COMMENT_PREFIXES = ("#", ";")
# Sections whose settings `pip install` reads; configparser copies [DEFAULT] into every section.
_INSTALL_SECTIONS = ("global", "install", configparser.DEFAULTSECT)
_BOM_NOTE = "removes the UTF-8 byte-order mark at the start, which pip cannot read"


def persist_change(index_url: str, platform_facts: dict) -> dict:
    """What --persist would do -> {"path", "before", "after", "changed", "encoding", "notes"}.

    `before`/`after` are the file texts (credentials NOT masked: show them with describe_change/public_change);
    `encoding` is the one the file was read in and will be written in. Raises UserError for a file that cannot
    be read or edited safely."""
    path = Path(user_config_file(platform_facts))
    before, encoding = _read_existing(path)
    newline = "\r\n" if str(platform_facts.get("platform", "")).startswith("win") else "\n"
    after = edit_pip_config(before, index_url, where=str(path), newline=newline)
    notes = []
    if encoding == "utf-8-sig":
        # pip reads with the locale's encoding, never "utf-8-sig", so a BOM makes it refuse the whole file.
        encoding = "utf-8"
        notes.append(_BOM_NOTE)
    try:
        after.encode(encoding)
    except UnicodeEncodeError:
        raise UserError(redact(f"{path} is saved as {encoding}, which cannot hold the index URL {index_url}; "
                               f"save the file as UTF-8, then run --persist again.")) from None
    return {"path": str(path), "before": before, "after": after, "changed": after != before or bool(notes),
            "encoding": encoding, "notes": notes}


def _read_existing(path: Path) -> tuple:
    """(text, encoding) of the config file, ("", "utf-8") when there is none yet."""
    if not os.path.lexists(path) or (path.is_symlink() and not path.exists()):
        return "", "utf-8"  # a dangling link: the file it names is created
    if not path.is_file():
        raise UserError(f"{path} is not a file, so --persist cannot write pip's config there; move it away, "
                        f"then run --persist again.")
    try:
        return read_config_file(path)
    except OSError as exc:
        raise UserError(f"Could not read {path} ({exc.strerror or exc}); check its permissions, then run "
                        f"--persist again.") from None
    except ValueError as exc:
        raise UserError(f"Could not read {path}: {exc}; save it as UTF-8, then run --persist again.") from None


def edit_pip_config(text: str, index_url: str, where: str = "this pip config file", newline: str = "\n") -> str:
    """`text` (a pip config file) edited so `pip install` uses `index_url`, and, for a plain-http index, trusts
    its host (added to the hosts already trusted). Returns `text` itself when it already does.

    `where` names the file in error sentences; `newline` ends new lines when `text` has none to copy.
    Raises UserError (one sentence) when `text` is not a file pip reads, or the edit cannot be made safely."""
    _check_url(index_url)
    host = _trusted_host_needed(index_url)
    before = _parse(text, lambda reason: f"pip cannot read {where} ({reason}); fix or move it, then run --persist "
                                         f"again.")
    if _satisfied(before, index_url, host):
        return text
    nl = next((line[len(line.rstrip("\r\n")):] for line in split_lines(text) if line.endswith(("\r", "\n"))),
              newline)

    def refused(reason: str) -> str:
        return (f"Editing {where} for --persist would leave a file pip cannot read ({reason}); nothing was "
                f"written, so set the index in it by hand.")

    # Every index-url pip install could read gets the new value, so whichever one pip picks is ours.
    after = _edit_entries(text, "index-url", _setter(index_url))
    if install_settings(_parse(after, refused)).get("index-url") != index_url:
        after = _add_option(after, "global", "index-url", index_url, nl)
    if host:
        after = _edit_entries(after, "trusted-host", _host_adder(host))
        if host not in _hosts(_parse(after, refused)):
            # Only empty trusted-host settings are left (pip ignores those): fill the ones [global] reads.
            after = _edit_entries(after, "trusted-host", _setter(host, only_empty=True),
                                  sections=("global", configparser.DEFAULTSECT))
        if host not in _hosts(_parse(after, refused)):
            after = _add_option(after, "global", "trusted-host", host, nl, after_key="index-url")
    _verify(before, _parse(after, refused), index_url, host, where)
    return after


def _check_url(index_url) -> None:
    if not isinstance(index_url, str) or not index_url.strip():
        raise UserError("--persist needs an index URL to write, and got an empty one.")
    if any(c.isspace() or not c.isprintable() for c in index_url):
        raise UserError(redact(f"The index URL {index_url!r} holds spaces or control characters, so pip could "
                               f"not read it back from its config; pass the URL without them."))


def _trusted_host_needed(index_url: str) -> Optional[str]:
    """The host to add to trusted-host: pip refuses a plain-http index unless its host is trusted."""
    try:
        parts = urlsplit(index_url)
        host = parts.hostname
    except ValueError:
        raise UserError(redact(f"The index URL {index_url!r} is not a valid URL; pass one like "
                               f"https://pypi.tuna.tsinghua.edu.cn/simple.")) from None
    return host if parts.scheme.lower() == "http" and host else None


def _parse(text: str, sentence=None) -> configparser.RawConfigParser:
    """`text` parsed as pip parses it; a parse error becomes UserError(sentence(reason in words))."""
    try:
        return parse_like_pip(text)
    except configparser.Error as exc:
        raise UserError(redact((sentence or str)(_reason(exc)))) from None


def _reason(exc: configparser.Error) -> str:
    """A parse error in words, without the line's text (it may hold a token)."""
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno} sets {exc.option!r} a second time in section {exc.section!r}"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno} opens section {exc.section!r} a second time"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno} comes before any [section] header"
    if isinstance(exc, configparser.ParsingError):
        numbers = ", ".join(str(n) for n, _line in exc.errors[:5])
        if len(exc.errors) == 1:
            return f"line {numbers} is not a `key = value` setting"
        return f"lines {numbers} are not `key = value` settings"
    return exc.__class__.__name__


def _hosts(parser: configparser.RawConfigParser) -> list:
    return install_settings(parser).get("trusted-host", "").split()


def _satisfied(parser: configparser.RawConfigParser, index_url: str, host: Optional[str]) -> bool:
    return install_settings(parser).get("index-url") == index_url and (host is None or host in _hosts(parser))


def _verify(before: configparser.RawConfigParser, after: configparser.RawConfigParser, index_url: str,
            host: Optional[str], where: str) -> None:
    """The edited file (parsed again, as pip parses it) must give exactly the intended settings, keep every
    trusted host, and leave every other setting as it was; else nothing is written."""
    if install_settings(after).get("index-url") != index_url:
        problem = "pip would still read another index-url"
    elif host and not set(_hosts(before)) | {host} <= set(_hosts(after)):
        problem = "a trusted host would be lost"
    elif not _same_other_settings(before, after):
        problem = "other settings would change"
    elif _without_ours(install_settings(before).items()) != _without_ours(install_settings(after).items()):
        # A new [global] section takes every [DEFAULT] setting, which pip did not read before.
        problem = "the new [global] section would also make pip read the settings in [DEFAULT]"
    else:
        return
    raise UserError(f"Editing {where} for --persist went wrong ({problem}); nothing was written, so set the "
                    f"index in it by hand.")


def _same_other_settings(before: configparser.RawConfigParser, after: configparser.RawConfigParser) -> bool:
    """Every setting but index-url and trusted-host reads the same; the only new section may be [global]."""
    return (set(after.sections()) - set(before.sections()) <= {"global"}
            and _without_ours(before.defaults().items()) == _without_ours(after.defaults().items())
            and all(after.has_section(s)
                    and _without_ours(before.items(s, raw=True)) == _without_ours(after.items(s, raw=True))
                    for s in before.sections()))


def _without_ours(items) -> dict:
    return {k: v for k, v in items if pip_key(k) not in ("index-url", "trusted-host")}


def _scan(lines: list) -> tuple:
    """Where each setting and section header is, found as configparser._read finds them (the text is known to
    parse). Returns (entries, headers): entries are dicts {section, key (as pip names it), line, more (the
    indexes of its continuation lines)}; headers maps a section name to its header line's index."""
    entries, headers = [], {}
    section, entry, level = None, None, 0
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        value = line.strip()
        if not value or value.startswith(_COMMENT_PREFIXES):
            continue  # blank lines and comments neither end a value nor start one
        indent = _NONSPACE.search(line).start()
        if section is not None and entry is not None and indent > level:
            entry["more"].append(i)
            continue
        level = indent
        header = _SECTION.match(value)
        if header:
            section, entry = header.group("header"), None
            headers.setdefault(section, i)
            continue
        option = _OPTION.match(value)
        entry = {"section": section, "key": pip_key(option.group("option").rstrip().lower()), "line": i, "more": []}
        entries.append(entry)
    return entries, headers


def _entry_value(lines: list, entry: dict) -> str:
    """The value configparser gives the entry (first line's value, then its continuation lines)."""
    first = _OPTION.match(lines[entry["line"]].strip()).group("value").strip()
    return "\n".join([first] + [lines[i].strip() for i in entry["more"]]).strip()


def _edit_entries(text: str, key: str, edit, sections=_INSTALL_SECTIONS) -> str:
    """`text` with edit(lines, entry) applied to every `key` setting in `sections` (from the last one up, so the
    line indexes of the ones before stay valid)."""
    lines = split_lines(text)
    entries, _headers = _scan(lines)
    for entry in reversed(entries):
        if entry["key"] == key and entry["section"] in sections:
            edit(lines, entry)
    return "".join(lines)


def _setter(value: str, only_empty: bool = False):
    """An edit that gives the setting `value` on its first line and drops its continuation lines."""
    def edit(lines: list, entry: dict) -> None:
        if only_empty and _entry_value(lines, entry).split():
            return
        lines[entry["line"]] = _set_first_value(lines[entry["line"]], value)
        for i in reversed(entry["more"]):
            del lines[i]
    return edit


def _host_adder(host: str):
    """An edit that adds `host` to a non-empty trusted-host setting lacking it: on a new continuation line when
    the value already spans lines, else at the end of its line."""
    def edit(lines: list, entry: dict) -> None:
        hosts = _entry_value(lines, entry).split()
        if not hosts or host in hosts:
            return
        if not entry["more"]:
            first = _OPTION.match(lines[entry["line"]].strip()).group("value").strip()
            lines[entry["line"]] = _set_first_value(lines[entry["line"]], f"{first} {host}")
            return
        last = entry["more"][-1]
        nl = _ending(lines[entry["line"]]) or "\n"
        if not _ending(lines[last]):
            lines[last] += nl
        lines.insert(last + 1, f"{_lead(lines[last])}{host}{nl}")
    return edit


def _set_first_value(line: str, value: str) -> str:
    """The setting line `line` with its value (after the delimiter) replaced; key, delimiter, indent and line
    ending are kept as the user wrote them."""
    body = line.rstrip("\r\n")
    lead, stripped = _lead(body), body.strip()
    option = _OPTION.match(stripped)
    head = stripped[:option.start("value")]
    if not option.group("value") and not head[-1:].isspace():
        head += " "
    return f"{lead}{head}{value}{_ending(line)}"


def _add_option(text: str, section: str, key: str, value: str, nl: str, after_key: Optional[str] = None) -> str:
    """`key = value` added to [section]: just after its `after_key` setting when it has one, else as its first
    setting; or in a new [section] at the end."""
    lines = split_lines(text)
    entries, headers = _scan(lines)
    if section not in headers:
        if lines and not _ending(lines[-1]):
            lines[-1] += nl
        gap = [nl] if lines and lines[-1].strip() else []
        return "".join(lines + gap + [f"[{section}]{nl}", f"{key} = {value}{nl}"])
    anchor = next((e for e in entries if e["section"] == section and e["key"] == after_key), None)
    if anchor:
        at, lead = (anchor["more"] or [anchor["line"]])[-1], _lead(lines[anchor["line"]])
    else:
        at = headers[section]
        following = next((line for line in lines[at + 1:]
                          if line.strip() and not line.strip().startswith(_COMMENT_PREFIXES)), "")
        # Indented like the next setting: less would turn that setting into a continuation of this one.
        lead = _lead(following)
    if not _ending(lines[at]):
        lines[at] += nl
    lines.insert(at + 1, f"{lead}{key} = {value}{_ending(lines[at])}")
    return "".join(lines)


def _lead(line: str) -> str:
    body = line.rstrip("\r\n")
    return body[:len(body) - len(body.lstrip())]


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")):]


def describe_change(change: dict) -> str:
    """The changed lines of the config file, diff style (credentials masked)."""
    if not change["changed"]:
        return f"{change['path']} already sets this index; nothing to change."
    return "\n".join([f"{change['path']}" + ("" if change["before"] else " (new file)") + ":"]
                     + [f"  {line}" for line in _diff_lines(change)])


def public_change(change: Optional[dict]) -> Optional[dict]:
    """The change as it may be shown or stored (--json): path, changed, the changed lines masked, notes."""
    if change is None:
        return None
    return {"path": change["path"], "changed": change["changed"], "lines": _diff_lines(change) if
            change["changed"] else [], "notes": list(change.get("notes") or [])}


def overridden_by(change: dict, index_url: str, settings: dict, env: dict) -> Optional[str]:
    """Why pip will not use the index --persist wrote, naming the environment variable or the file that wins;
    None when pip uses it. `settings`: pip's index settings as pip_config.read_pip_index_config gives them,
    read after the change was written; `env`: the environment they were read with."""
    if settings.get("index_url") == index_url:
        return None
    path, source = change["path"], str(settings.get("sources", {}).get("index_url", "default"))
    uses = redact(str(settings.get("index_url")))
    env_file = env.get("PIP_CONFIG_FILE")
    if source.startswith("environment "):
        var = source.split(" ", 1)[1]
        return (f"the environment variable {var} overrides the index written to {path} (pip uses {uses}); unset "
                f"{var} for pip to use it.")
    if env_file and os.path.realpath(env_file) != os.path.realpath(path):
        return (f"the environment variable PIP_CONFIG_FILE={redact(env_file)} makes pip skip {path}, so pip uses "
                f"{uses}; unset PIP_CONFIG_FILE for pip to use the index written there.")
    if source != "default":
        return (f"{source} also sets index-url, and pip takes it over the one in {path} (pip uses {uses}); remove "
                f"it there for pip to use the index written.")
    return f"pip does not read the index written to {path} (pip uses {uses})."


def _diff_lines(change: dict) -> list:
    out = []
    for line in difflib.unified_diff(change["before"].splitlines(), change["after"].splitlines(), n=0,
                                     lineterm=""):
        if line[:1] in "-+" and not line.startswith(("---", "+++")):
            out.append(f"{line[0]} {redact(line[1:].strip())}")
    return out + [f"({note})" for note in change.get("notes") or []]


def apply_change(change: dict) -> None:
    """Write the new text atomically: a temp file beside the real file (through a symlink, which stays), with
    the old file's permissions, then a rename. A new file is created private (0600): it may hold a token.
    Raises UserError when the file changed since persist_change read it, or cannot be written."""
    if not change["changed"]:
        return
    shown = change["path"]
    target = Path(os.path.realpath(shown))
    encoding = change.get("encoding") or "utf-8"
    if _current_text(Path(shown)) != change["before"]:
        raise UserError(f"{shown} changed after --persist read it, so nothing was written to it; run the "
                        f"command again to persist the index.")
    data = change["after"].encode(encoding)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else None
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data, mode)
    except OSError as exc:
        raise UserError(f"Could not write {shown} ({exc.strerror or exc}); the index was not persisted.") from None


def _current_text(path: Path) -> str:
    try:
        return _read_existing(path)[0]
    except UserError:
        return "\0unreadable"


def _write_atomically(target: Path, data: bytes, mode: Optional[int]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
