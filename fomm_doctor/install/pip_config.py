"""Which index pip will use: its environment variables and config files, read the way pip reads them.

Used by `fomm-doctor check` (shows the index, credentials masked) and by `fomm-doctor install` (installs from
the index the user already chose, and `--persist` writes to the right file).

Precedence, lowest first (later wins): global files, user files, site file (`<sys.prefix>/pip.conf`),
the file in PIP_CONFIG_FILE, then PIP_* environment variables. Inside a file `[install]` beats `[global]`.
PIP_CONFIG_FILE set to the null device turns every config file off.
"""
import configparser
import os
import posixpath
import ntpath

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
    home = platform_facts.get("home") or "~"
    prefix = platform_facts.get("prefix") or ""
    windows = platform.startswith("win")
    join = ntpath.join if windows else posixpath.join
    name = config_basename(platform)

    env_file = env.get("PIP_CONFIG_FILE")
    if env_file and env_file in ("/dev/null", "nul", "NUL", os.devnull):
        return []  # pip: "Skipping loading configuration files"

    files = []
    if windows:
        programdata = env.get("PROGRAMDATA") or env.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        files.append({"kind": "global", "path": join(programdata, "pip", name)})
    elif platform == "darwin":
        files.append({"kind": "global", "path": join("/Library/Application Support/pip", name)})
    else:
        for base in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"):
            if base:
                files.append({"kind": "global", "path": join(base, "pip", name)})
        files.append({"kind": "global", "path": join("/etc", name)})

    # User files are skipped when PIP_CONFIG_FILE names a file that exists (pip does the same).
    if not (env_file and os.path.exists(env_file)):
        if windows:
            files.append({"kind": "user", "path": join(home, "pip", name)})  # legacy location
            appdata = env.get("APPDATA") or join(home, "AppData", "Roaming")
            files.append({"kind": "user", "path": join(appdata, "pip", name)})
        else:
            files.append({"kind": "user", "path": join(home, ".pip", name)})  # legacy location
            if platform == "darwin":
                files.append({"kind": "user", "path": join(home, "Library", "Application Support", "pip", name)})
            xdg = env.get("XDG_CONFIG_HOME") or join(home, ".config")
            files.append({"kind": "user", "path": join(xdg, "pip", name)})

    if prefix:
        files.append({"kind": "site", "path": join(prefix, name)})
    if env_file:
        files.append({"kind": "env", "path": env_file})
    return files


def user_config_file(platform_facts: dict) -> str:
    """The file `pip config --user set` writes: the last user file in the list (the modern location)."""
    users = [f["path"] for f in pip_config_files(dict(platform_facts, env={
        k: v for k, v in (platform_facts.get("env") or {}).items() if k != "PIP_CONFIG_FILE"}))
        if f["kind"] == "user"]
    return users[-1]


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

    for entry in files:
        path = entry["path"] if isinstance(entry, dict) else str(entry)
        if not os.path.isfile(path):
            continue
        parser = configparser.RawConfigParser()
        try:
            with open(path, encoding="utf-8-sig") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            result["errors"].append(f"{path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            continue
        result["files_read"].append(path)
        for section in ("global", "install"):  # [install] overrides [global] for `pip install`
            if not parser.has_section(section):
                continue
            for raw_key, value in parser.items(section):
                key = keys.get(raw_key.replace("_", "-").lower())
                if key is None:
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
