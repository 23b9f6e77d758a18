"""Which index pip will use: its environment variables and config files, read the way pip reads them.

Used by `fomm-doctor check` (shows the index, credentials masked) and by `fomm-doctor install` (installs from
the index the user already chose, and `--persist` writes to the right file).

Precedence, lowest first (later wins): global files, user files, site file (`<sys.prefix>/pip.conf`),
the file in PIP_CONFIG_FILE, then PIP_* environment variables. `[install]` beats `[global]`, across files too
(pip merges the files, then reads [global], then [install]).
PIP_CONFIG_FILE set to the null device turns every config file off.

Files are parsed as pip parses them (`configparser.RawConfigParser()` with its defaults: `=` and `:` both
delimit, option names lowercased, a duplicate option or section is an error, `[DEFAULT]` feeds every
section); pip then spells every key with `-` for `_` (`index_url` is `index-url`).
"""
import codecs
import configparser
import locale
import os
import posixpath
import ntpath
import re

PYPI_SIMPLE = "https://pypi.org/simple"


def config_basename(platform: str) -> str:
    return "pip.ini" if platform.startswith("win") else "pip.conf"


def pip_config_files(platform_facts: dict) -> list:
    """Every config file pip would read on that platform, lowest precedence first.

    platform_facts: {"platform": sys.platform, "env": {...}, "home": str, "prefix": sys.prefix}.
    Returns [{"kind": "global"|"user"|"site"|"env", "path": str}] (files may not exist).
    """
    platform = platform_facts.get("platform", "linux")
    env = platform_facts.get("env") or {}
    env_file = env.get("PIP_CONFIG_FILE")
    if env_file and env_file in ("/dev/null", "nul", "NUL", os.devnull):
        return []  # pip: "Skipping loading configuration files"
    join = ntpath.join if platform.startswith("win") else posixpath.join
    name = config_basename(platform)
    files = [{"kind": "global", "path": p} for p in _global_files(platform, env, join, name)]
    # User files are skipped when PIP_CONFIG_FILE names a file that exists (pip does the same).
    if not (env_file and os.path.exists(env_file)):
        home = platform_facts.get("home") or "~"
        files += [{"kind": "user", "path": p} for p in _user_files(platform, env, home, join, name)]
    if platform_facts.get("prefix"):
        files.append({"kind": "site", "path": join(platform_facts["prefix"], name)})
    if env_file:
        files.append({"kind": "env", "path": env_file})
    return files


def _global_files(platform: str, env: dict, join, name: str) -> list:
    if platform.startswith("win"):
        programdata = env.get("PROGRAMDATA") or env.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        return [join(programdata, "pip", name)]
    if platform == "darwin":
        return [join("/Library/Application Support/pip", name)]
    xdg = [join(base, "pip", name) for base in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if base]
    return xdg + [join("/etc", name)]


def _user_files(platform: str, env: dict, home: str, join, name: str) -> list:
    """The legacy location first, then the modern one (which `pip config --user` writes)."""
    if platform.startswith("win"):
        appdata = env.get("APPDATA") or join(home, "AppData", "Roaming")
        return [join(home, "pip", name), join(appdata, "pip", name)]
    return [join(home, ".pip", name), join(_user_config_dir(platform, env, home), name)]


def _user_config_dir(platform: str, env: dict, home: str) -> str:
    """pip's user config folder on Linux and macOS. macOS: ~/Library/Application Support/pip when that folder
    exists, else ~/.config/pip (pip reads one of them, never both, and ignores XDG_CONFIG_HOME there)."""
    if platform == "darwin":
        app_support = posixpath.join(home, "Library", "Application Support", "pip")
        return app_support if os.path.isdir(app_support) else posixpath.join(home, ".config", "pip")
    return posixpath.join(env.get("XDG_CONFIG_HOME") or posixpath.join(home, ".config"), "pip")


def user_config_file(platform_facts: dict) -> str:
    """The file `pip config --user set` writes: the last user file in the list (the modern location)."""
    users = [f["path"] for f in pip_config_files(dict(platform_facts, env={
        k: v for k, v in (platform_facts.get("env") or {}).items() if k != "PIP_CONFIG_FILE"}))
        if f["kind"] == "user"]
    return users[-1]


def decode_config(data: bytes) -> tuple:
    """(text, encoding) of a config file's bytes: UTF-8 (with or without a byte-order mark), else the locale's
    encoding (the one pip itself reads with), else GBK (Chinese Windows saves comments in its ANSI code page).
    The encoding is "utf-8-sig" when there was a BOM. Raises ValueError (one sentence) when none fits."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            pass
    tried = []
    for name in ("utf-8", locale.getpreferredencoding(False) or "utf-8", "gbk"):
        try:
            canonical = codecs.lookup(name).name
        except LookupError:
            continue
        if canonical in tried:
            continue
        tried.append(canonical)
        try:
            return data.decode(canonical), canonical
        except UnicodeDecodeError:
            continue
    raise ValueError(f"it is not {', '.join(tried[:-1])} or {tried[-1]} text")


def read_config_file(path) -> tuple:
    """(text, encoding) of the file at `path`; OSError, or ValueError when it is not text (see decode_config)."""
    with open(path, "rb") as f:
        return decode_config(f.read())


def split_lines(text: str) -> list:
    """The lines of `text`, endings kept, split where a text-mode file read splits them (\\r\\n, \\r, \\n only:
    pip reads the file that way, so a form feed or U+2028 stays inside its line)."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+", text)


class _PipConfigParser(configparser.RawConfigParser):
    """Option names as pip 26.3 and newer read them (its `_RawConfigParser`): normalised while the file is read,
    so `index_url` and `index-url` in one section are the same option set twice, which pip refuses. Older pip
    read such a file; a file we accept or write must stay readable by the pip a user upgrades to."""

    def optionxform(self, optionstr: str) -> str:
        return pip_key(optionstr)


def parse_like_pip(text: str) -> configparser.RawConfigParser:
    """`text` parsed as pip parses a config file; raises configparser.Error where pip would refuse it."""
    parser = _PipConfigParser()
    # A text-mode read hands configparser each line ending in "\n", whatever the file's own line ending.
    lines = (line.rstrip("\r\n") + "\n" if line.endswith(("\r", "\n")) else line for line in split_lines(text))
    parser.read_file(lines, source="<pip config>")
    return parser


def pip_key(name: str) -> str:
    """A config option name as pip knows it (pip's `_normalize_name`): lowercase, `-` for `_`, no leading `--`."""
    name = name.lower().replace("_", "-")
    return name[2:] if name.startswith("--") else name


def install_settings(parser: configparser.RawConfigParser) -> dict:
    """{pip key: value} that `pip install` takes from one parsed file: [install] beats [global], a later spelling
    of the same key beats an earlier one, and empty values are ignored (pip skips them)."""
    settings = {}
    for section in ("global", "install"):
        if not parser.has_section(section):
            continue
        merged = {}
        for name, value in parser.items(section):
            merged[pip_key(name)] = value
        settings.update({k: v for k, v in merged.items() if v})
    return settings


def _split(value: str) -> list:
    return [v for v in value.split() if v]


def read_pip_index_config(env: dict, files: list) -> dict:
    """The effective index settings for `pip install`.

    env: the environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS); files: as `pip_config_files`
    returns (dicts with "path") or plain paths, lowest precedence first.
    Returns {"index_url", "extra_index_urls", "find_links", "sources", "files_read", "errors"}; URLs are NOT
    masked (the installer needs them); `sources` says where each setting came from.
    """
    result = {"index_url": PYPI_SIMPLE, "extra_index_urls": [], "find_links": [],
              "sources": {"index_url": "default"}, "files_read": [], "errors": []}
    keys = {"index-url": "index_url", "extra-index-url": "extra_index_urls", "find-links": "find_links"}

    parsed = []
    for entry in files:
        path = entry["path"] if isinstance(entry, dict) else str(entry)
        if not os.path.isfile(path):
            continue
        try:
            text, encoding = read_config_file(path)
            parser = parse_like_pip(text)
        except (OSError, ValueError, configparser.Error) as exc:
            result["errors"].append(f"{path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            continue
        if encoding == "utf-8-sig":
            # pip decodes with the locale's encoding, so the mark lands before "[" and pip refuses the file.
            result["errors"].append(f"{path}: ByteOrderMark: pip cannot read a file that starts with a UTF-8 "
                                    f"byte-order mark; save it as UTF-8 without one")
            continue
        result["files_read"].append(path)
        parsed.append((path, parser))
    # pip merges the files first, then takes [global], then [install]: an [install] setting in any file beats a
    # [global] one in every file, a file of higher precedence included.
    for section in ("global", "install"):
        for path, parser in parsed:
            if not parser.has_section(section):
                continue
            for raw_key, value in parser.items(section):
                key = keys.get(pip_key(raw_key))
                if key is None or not value:  # pip ignores an empty value
                    continue
                _store(result, key, value, f"{path} [{section}]")

    for var, key in (("PIP_INDEX_URL", "index_url"), ("PIP_EXTRA_INDEX_URL", "extra_index_urls"),
                     ("PIP_FIND_LINKS", "find_links")):
        if env.get(var):
            _store(result, key, env[var], f"environment {var}")
    return result


def _store(result: dict, key: str, value: str, source: str) -> None:
    if key == "index_url":
        values = _split(value)
        if values:
            result["index_url"] = values[0]
            result["sources"]["index_url"] = source
    else:
        result[key] = _split(value)
        result["sources"][key] = source
