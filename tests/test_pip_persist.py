"""`install --persist` edits the user's pip config file: real files in tmp_path, read back by real pip.

`pip_reads` runs pip's own `install` option parser in a subprocess on the file (PIP_CONFIG_FILE), so the
index-url and trusted hosts asserted are the ones `pip install` would use; "refused" is pip rejecting the file.
"""
import configparser
import json
import os
import stat
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fomm_doctor.errors import UserError
from fomm_doctor.install import pip_persist
from fomm_doctor.install.pip_config import parse_like_pip, pip_key
from fomm_doctor.install.pip_persist import (apply_change, describe_change, edit_pip_config, persist_change,
                                             public_change)

NEW = "https://pypi.tuna.tsinghua.edu.cn/simple/"
HTTP = "http://mirror.example:8080/simple/"  # plain http: pip needs mirror.example in trusted-host

_PIP_READS = """
import json, locale, sys
if sys.argv[1]:  # as on a machine with that locale; pip asks for it in one of these ways, by version
    locale.getpreferredencoding = lambda do_setlocale=True: sys.argv[1]
    locale.getencoding = lambda: sys.argv[1]
    import pip._internal.configuration as configuration
    if hasattr(configuration, "get_locale_encoding"):
        configuration.get_locale_encoding = lambda: sys.argv[1]
from pip._internal.commands import create_command
options, _ = create_command("install").parse_args([])
print(json.dumps({"index_url": options.index_url, "trusted_hosts": options.trusted_hosts}))
"""


def _pip_env(conf, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    home = tmp_path / "pip-home"
    env.update(PIP_CONFIG_FILE=str(conf), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CONFIG_DIRS=str(tmp_path / "no-global-config"))
    return env


def pip_reads(conf, tmp_path, locale_encoding=""):
    proc = subprocess.run([sys.executable, "-c", _PIP_READS, locale_encoding], capture_output=True, text=True,
                          env=_pip_env(conf, tmp_path), timeout=60)
    if proc.returncode:
        return {"refused": proc.stdout + proc.stderr}
    return json.loads(proc.stdout.splitlines()[-1])


def pip_config_list(conf, tmp_path):
    return subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                          env=_pip_env(conf, tmp_path), timeout=60)


@pytest.fixture
def user(tmp_path):
    """(platform facts, the user pip.conf path) for a Linux home in tmp_path."""
    conf = tmp_path / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    return {"platform": "linux", "env": {}, "home": str(tmp_path)}, conf


def persist(facts, url):
    change = persist_change(url, facts)
    apply_change(change)
    return change


def one_sentence(err) -> str:
    text = str(err)
    assert "\n" not in text and "\r" not in text and "Traceback" not in text and text.endswith(".")
    return text


# 1. index-url in every spelling and section pip reads


@pytest.mark.parametrize("before", [
    "[global]\nindex-url: https://old.example/simple\ntimeout: 30\n",
    "[global]\nINDEX_URL = https://old.example/simple\ntimeout = 30\n",
    "[global]\ntimeout = 30\n--index-url=https://old.example/simple\n",
    "[global]\nindex-url =\n    https://old.example/simple\ntimeout = 30\n",
    "[global]\ntimeout = 30\nindex-url = https://old.example/g\n[install]\nindex-url : https://old.example/simple\n",
    "[install]\nindex_url = https://old.example/simple\n[global]\ntimeout = 30\n",
    "[DEFAULT]\nindex-url = https://old.example/simple\n[install]\ntimeout = 30\n",
])
def test_index_url_is_replaced_where_pip_reads_it(user, tmp_path, before):
    facts, conf = user
    conf.write_text(before)
    assert pip_reads(conf, tmp_path)["index_url"] != NEW
    change = persist(facts, NEW)
    text = conf.read_text()
    assert "old.example/simple" not in text and "timeout" in text
    assert pip_reads(conf, tmp_path) == {"index_url": NEW, "trusted_hosts": []}
    listed = pip_config_list(conf, tmp_path)
    assert listed.returncode == 0 and f"index-url='{NEW}'" in listed.stdout
    assert [line[0] for line in change["after"].splitlines() if "index" in line.lower()] == \
        [line[0] for line in before.splitlines() if "index" in line.lower()]  # replaced in place, none added
    assert not persist_change(NEW, facts)["changed"]


def test_colon_form_keeps_its_spelling(user):
    facts, conf = user
    conf.write_text("# mine\n[global]\nindex-url: https://old.example/simple\n")
    change = persist(facts, NEW)
    assert conf.read_text() == f"# mine\n[global]\nindex-url: {NEW}\n"
    assert describe_change(change).splitlines()[1:] == ["  - index-url: https://old.example/simple",
                                                        f"  + index-url: {NEW}"]


# 2. trusted-host gains the host, keeping the others


@pytest.mark.parametrize("before, hosts", [
    ("[global]\ntrusted-host = a.example b.example\n", ["a.example", "b.example", "mirror.example"]),
    ("[global]\r\ntrusted-host =\r\n    a.example\r\n    b.example\r\n", ["a.example", "b.example", "mirror.example"]),
    ("[global]\ntrusted_host: a.example", ["a.example", "mirror.example"]),
    ("[global]\ntrusted-host = mirror.example a.example\n", ["mirror.example", "a.example"]),
    ("[install]\ntrusted-host = a.example\n[global]\ntrusted-host = g.example\n", ["a.example", "mirror.example"]),
    ("[global]\ntrusted-host =\n", ["mirror.example"]),
])
def test_trusted_host_is_added_not_replaced(user, tmp_path, before, hosts):
    facts, conf = user
    conf.write_bytes(before.encode())
    persist(facts, HTTP)
    assert pip_reads(conf, tmp_path) == {"index_url": HTTP, "trusted_hosts": hosts}
    after = conf.read_bytes().decode()
    parsed = parse_like_pip(after)
    for section in parsed.sections():
        for key, value in parsed.items(section):
            if pip_key(key) == "trusted-host":
                assert len(value.split()) == len(set(value.split())), "a host added twice"
    if "\r\n" in before:
        assert after.count("\r\n") == after.count("\n")  # the file's own line endings
    assert not persist_change(HTTP, facts)["changed"]


# 3. symlinks and permissions


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX symlinks and modes")
def test_symlinked_config_is_written_through_and_stays_a_link(user, tmp_path):
    facts, conf = user
    real = tmp_path / "dotfiles" / "pip.conf"
    real.parent.mkdir()
    real.write_text("[global]\ntimeout = 60\n")
    real.chmod(0o640)
    conf.symlink_to(real)
    persist(facts, NEW)
    assert conf.is_symlink() and os.readlink(conf) == str(real)
    assert f"index-url = {NEW}" in real.read_text() and "timeout = 60" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(os.listdir(real.parent)) == ["pip.conf"] and sorted(os.listdir(conf.parent)) == ["pip.conf"]
    assert pip_reads(conf, tmp_path)["index_url"] == NEW


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_permissions_are_kept(user, mode):
    facts, conf = user
    conf.write_text("[global]\nindex-url = https://me:tok@old.example/simple\n")
    conf.chmod(mode)
    persist(facts, "https://me:tok2@new.example/simple")
    assert stat.S_IMODE(conf.stat().st_mode) == mode and "tok2@new.example" in conf.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_new_file_is_created_private_and_pip_reads_it(user, tmp_path):
    facts, conf = user
    conf.parent.rmdir()
    change = persist(facts, HTTP)
    assert describe_change(change).splitlines()[0] == f"{conf} (new file):"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # it may hold a token
    assert pip_reads(conf, tmp_path) == {"index_url": HTTP, "trusted_hosts": ["mirror.example"]}


# 4. encodings


def test_gbk_config_is_edited_and_written_back_in_gbk(user, tmp_path):
    facts, conf = user
    comment = "# 公司镜像配置，勿删\r\n".encode("gbk")
    conf.write_bytes(comment + b"[global]\r\ntimeout = 60\r\n")
    with pytest.raises(UnicodeDecodeError):
        conf.read_bytes().decode("utf-8")
    change = persist(facts, NEW)
    assert change["encoding"] == "gbk"
    data = conf.read_bytes()
    assert data.startswith(comment) and f"index-url = {NEW}\r\n".encode() in data
    assert data.decode("gbk").count("\r\n") == 4
    # pip on Chinese Windows reads with the ANSI code page
    assert pip_reads(conf, tmp_path, locale_encoding="gbk")["index_url"] == NEW
    assert not persist_change(NEW, facts)["changed"]


def test_utf8_config_stays_utf8(user, tmp_path):
    facts, conf = user
    conf.write_bytes("# 公司镜像\n[global]\n".encode("utf-8"))
    assert persist(facts, NEW)["encoding"] == "utf-8"
    assert conf.read_bytes().decode("utf-8") == f"# 公司镜像\n[global]\nindex-url = {NEW}\n"
    assert pip_reads(conf, tmp_path)["index_url"] == NEW


def test_byte_order_mark_that_pip_refuses_is_removed(user, tmp_path):
    facts, conf = user
    conf.write_bytes(b"\xef\xbb\xbf[global]\nindex-url = " + NEW.encode() + b"\n")
    assert "refused" in pip_reads(conf, tmp_path)  # pip reads with the locale's encoding, never utf-8-sig
    change = persist_change(NEW, facts)
    assert change["changed"] and "byte-order mark" in describe_change(change)
    apply_change(change)
    assert conf.read_bytes() == ("[global]\nindex-url = " + NEW + "\n").encode()
    assert pip_reads(conf, tmp_path)["index_url"] == NEW
    assert not persist_change(NEW, facts)["changed"]


# 5. the edited text is parsed again before anything is written


def test_edit_pip_would_refuse_is_not_written(user, monkeypatch):
    facts, conf = user
    before = "[global]\nindex-url = https://old.example/simple\n"
    conf.write_text(before)
    # an editor that fails to replace index-url would add a second one, which pip refuses
    monkeypatch.setattr(pip_persist, "_setter", lambda *a, **k: (lambda lines, entry: None))
    with pytest.raises(UserError) as err:
        persist_change(NEW, facts)
    text = one_sentence(err.value)
    assert str(conf) in text and "pip cannot read" in text and "'index-url' a second time" in text
    assert conf.read_text() == before


def test_default_section_settings_are_not_switched_on(user):
    """pip reads [DEFAULT] only through a section; adding [global] would switch its other settings on."""
    facts, conf = user
    conf.write_text("[DEFAULT]\nno-cache-dir = true\n")
    text = one_sentence(pytest.raises(UserError, persist_change, NEW, facts).value)
    assert "settings in [DEFAULT]" in text and conf.read_text() == "[DEFAULT]\nno-cache-dir = true\n"


def test_edit_that_misses_the_intended_settings_is_not_written(user, monkeypatch):
    facts, conf = user
    conf.write_text("[other]\na = 1\n")
    monkeypatch.setattr(pip_persist, "_add_option", lambda text, *a, **k: text)
    with pytest.raises(UserError) as err:
        persist_change(NEW, facts)
    assert "pip would still read another index-url" in one_sentence(err.value)
    assert conf.read_text() == "[other]\na = 1\n"


# bad input: one sentence, credentials masked


@pytest.mark.parametrize("data, words", [
    (b"index-url = https://me:tok@a.example/s\n", "line 1 comes before any [section] header"),
    # pip 26.3 and newer read `index_url` as `index-url`: line 3 already sets it a second time, as pip says
    (b"[global]\nindex-url = https://me:tok@a.example/s\nindex_url = x\nindex-url: y\n",
     "line 3 sets 'index-url' a second time"),
    (b"[global]\n[install]\n[global]\n", "line 3 opens section 'global' a second time"),
    (b"[global]\nmirror tsinghua please\n", "line 2 is not a `key = value` setting"),
    (b"\xff\xfe\xff[global]\n", "not utf-8 or gbk text"),
])
def test_unreadable_config_gives_one_sentence(user, data, words):
    facts, conf = user
    conf.write_bytes(data)
    with pytest.raises(UserError) as err:
        persist_change(NEW, facts)
    text = one_sentence(err.value)
    assert words in text and str(conf) in text and "tok" not in text
    assert conf.read_bytes() == data


def test_sentence_for_a_path_with_braces(tmp_path):
    home = tmp_path / "{user}"
    conf = home / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[global]\nindex-url = a\nindex-url = b\n")
    err = pytest.raises(UserError, persist_change, NEW, {"platform": "linux", "env": {}, "home": str(home)}).value
    assert str(conf) in one_sentence(err) and "line 3" in str(err)


def test_config_path_that_is_a_folder_or_bad_url(user):
    facts, conf = user
    conf.mkdir()
    assert "is not a file" in one_sentence(pytest.raises(UserError, persist_change, NEW, facts).value)
    conf.rmdir()
    for bad in ("https://me:tok@a b/simple", "http://[::1/simple", ""):
        text = one_sentence(pytest.raises(UserError, persist_change, bad, facts).value)
        assert "tok" not in text
    assert not conf.exists()


def test_file_changed_after_reading_is_not_overwritten(user):
    facts, conf = user
    conf.write_text("[global]\n")
    change = persist_change(NEW, facts)
    conf.write_text("[global]\ntimeout = 5\n")
    assert "changed after --persist read it" in one_sentence(pytest.raises(UserError, apply_change, change).value)
    assert conf.read_text() == "[global]\ntimeout = 5\n"


def test_summary_masks_credentials_in_every_form(user):
    facts, conf = user
    conf.write_text("[global]\nindex-url: https://me:oldtok@old.example/simple\n")
    change = persist_change("https://me:newtok@new.example/simple", facts)
    shown = describe_change(change) + json.dumps(public_change(change))
    assert "oldtok" not in shown and "newtok" not in shown
    assert "- index-url: https://me:****@old.example/simple" in shown
    assert public_change(change)["lines"] == ["- index-url: https://me:****@old.example/simple",
                                              "+ index-url: https://me:****@new.example/simple"]
    assert public_change(None) is None


# 6. properties: any text gives a file pip reads with exactly the intended settings, or one sentence


def _pip_view(text: str):
    """What pip's own config loader makes of `text` saved as a file: {key: value} as `pip install` takes them
    ([install] over [global], empty values skipped), or None when pip refuses the file."""
    import pip._internal.configuration as configuration
    from pip._internal.configuration import Configuration
    # older pip names the config kinds `kinds`; newer pip makes `Kind` an Enum holding them
    kinds = getattr(configuration, "kinds", None) or configuration.Kind
    from pip._internal.exceptions import ConfigurationError
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pip.conf")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8"))
        config = Configuration(isolated=True)
        try:
            config._load_file(kinds.ENV, path)
        except ConfigurationError:
            return None
    loaded = config._config[kinds.ENV]
    if isinstance(loaded.get(path), dict):  # newer pip keeps each file's settings apart, keyed by its name
        loaded = loaded[path]
    view = {}
    for section in ("global", "install"):
        for key, value in loaded.items():
            if key.startswith(section + ".") and value:
                view[key.split(".", 1)[1]] = value
    return view


_KEYS = ["index-url", "index_url", "INDEX-URL", "--index-url", "trusted-host", "trusted_host", "Trusted-Host",
         "timeout", "extra-index-url", "x"]
_VALUES = ["https://old.example/simple", "a.example b.example", "mirror.example", "", "60", "http://x:y@h/s",
           "中文", "%(x)s", "a\x85b", "c\u2028d", "\x0cff"]
_setting = st.builds(lambda indent, key, delim, value: f"{indent}{key}{delim}{value}",
                     st.sampled_from(["", "", " ", "\t"]), st.sampled_from(_KEYS),
                     st.sampled_from([" = ", "=", ": ", ":", " : ", "  =  "]),
                     st.one_of(st.sampled_from(_VALUES), st.text(max_size=8)))
_line = st.one_of(
    st.sampled_from(["[global]", "[install]", "[DEFAULT]", "[Global]", "[other]", "  [global]", "[global] x",
                     "[install]]", "[", "[]"]),
    _setting, _setting,
    st.builds(lambda indent, value: indent + value, st.sampled_from(["  ", "    ", "\t", " "]),
              st.one_of(st.sampled_from(_VALUES), st.text(max_size=8))),
    st.sampled_from(["", "   ", "# c", "; c", "  # 注释", "#[global]"]),
    st.text(max_size=12),
)
_text = st.builds(lambda lines, ends, last: "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
                  + last, st.lists(_line, max_size=12), st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1,
                                                                        max_size=3),
                  st.sampled_from(["", "index-url = z", "  more"]))
_urls = st.sampled_from([NEW, HTTP, "https://u:tok@private.example/simple", "http://mirror.example/simple"])


def _check_edit(text: str, url: str) -> None:
    before = _pip_view(text)
    try:
        after = edit_pip_config(text, url)
    except UserError as err:
        one_sentence(err)
        assert "tok" not in str(err)
        return
    assert before is not None, "pip refuses this file, so the editor must refuse it too"
    view = _pip_view(after)
    assert view is not None, f"pip refuses the edited file: {after!r}"
    assert view.get("index-url") == url
    if url.startswith("http://"):
        hosts = view.get("trusted-host", "").split()
        assert "mirror.example" in hosts and set(before.get("trusted-host", "").split()) <= set(hosts)
    assert {k: v for k, v in view.items() if k not in ("index-url", "trusted-host")} == \
        {k: v for k, v in before.items() if k not in ("index-url", "trusted-host")}
    assert edit_pip_config(after, url) == after  # a second run changes nothing


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text, _urls)
def test_property_edit_is_readable_by_pip_with_exactly_the_intended_settings(text, url):
    _check_edit(text, url)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), _urls)
def test_property_any_text_gives_a_result_or_one_sentence(text, url):
    _check_edit(text, url)


@settings(max_examples=150, deadline=None)
@given(_text, _urls)
def test_property_editor_accepts_every_file_pip_reads(text, url):
    """The editor refuses only what pip refuses (it never gives up on a file pip reads), but for one case:
    [DEFAULT] holds other settings and no section reads them; the [global] it must add would take them."""
    if _pip_view(text) is None:
        return
    try:
        parsed = parse_like_pip(text)
    except configparser.DuplicateOptionError:
        # one option in two spellings (index_url, index-url): pip older than 26.3 reads that, 26.3 and newer
        # refuse it, and the editor follows the newer pip
        import pip._internal.configuration as configuration
        assert not hasattr(configuration, "_RawConfigParser"), "this pip refuses it too"
        return
    defaults = {pip_key(k): v for k, v in parsed.defaults().items()}  # as pip merges spellings
    if not parsed.has_section("global") and not parsed.has_section("install") and \
            any(v and k not in ("index-url", "trusted-host") for k, v in defaults.items()):
        with pytest.raises(UserError, match=r"would also make pip read the settings in \[DEFAULT\]"):
            edit_pip_config(text, url)
        return
    edit_pip_config(text, url)


# ---- after persisting, the command says what overrides the index it wrote ----------------------------------

@pytest.fixture(scope="module")
def persist_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("pv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    return root


@pytest.mark.parametrize("where", ["nothing", "PIP_INDEX_URL", "PIP_CONFIG_FILE", "global [install]", "site"])
def test_persist_names_what_overrides_the_index_it_wrote(persist_venv, tmp_path, where):
    from conftest import run_cli
    from httpfaults import FaultServer, fake_torch_wheel, simple_routes
    other = "https://other.example/simple/"
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CONFIG_DIRS": str(tmp_path / "etc"),
           "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": "", "PIP_NO_INPUT": "1"}
    site = persist_venv / "pip.conf"
    if where == "PIP_INDEX_URL":
        env["PIP_INDEX_URL"] = other
    elif where == "PIP_CONFIG_FILE":
        (tmp_path / "mine.conf").write_text(f"[global]\nindex-url = {other}\n")
        env["PIP_CONFIG_FILE"] = str(tmp_path / "mine.conf")
    elif where == "global [install]":
        (tmp_path / "etc" / "pip").mkdir(parents=True)
        (tmp_path / "etc" / "pip" / "pip.conf").write_text(f"[install]\nindex-url = {other}\n")
    elif where == "site":
        site.write_text(f"[global]\nindex-url = {other}\n")
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    try:
        with FaultServer(simple_routes([wheel])) as srv:
            args = ["install", "--python", persist_venv / "bin" / "python", "--mirror", srv.url("/simple/"),
                    "--only", "torch", "--persist", "--yes", "--cache-dir", tmp_path / "cache",
                    "--official-pypi", "none", "--official-pytorch", "none"]
            proc = run_cli(*args, "--json", env=env, timeout=240)
            shown = run_cli(*args, env=env, timeout=240)
            index = srv.url("/simple/")
        # the index pip itself will use, in the target, with this environment and these files
        pip_uses = subprocess.run([str(persist_venv / "bin" / "python"), "-c", "from pip._internal.commands import "
                                   "create_command as c; print(c('install').parse_args([])[0].index_url)"],
                                  capture_output=True, text=True, env=dict(os.environ, **env)).stdout.strip()
    finally:
        site.unlink(missing_ok=True)
    assert proc.returncode == 0 and shown.returncode == 0, proc.stderr[-2000:] + shown.stderr[-2000:]
    written = home / ".config" / "pip" / "pip.conf"
    assert f"index-url = {index}" in written.read_text()
    note = json.loads(proc.stdout)["persist"]["overridden_by"]
    text = "".join(shown.stdout.split())  # rich wraps long lines, inside words too
    assert pip_uses == (index if where == "nothing" else other)
    if where == "nothing":
        assert note is None and "--persist:" not in text
        return
    named = {"PIP_INDEX_URL": "environment variable PIP_INDEX_URL", "PIP_CONFIG_FILE": "PIP_CONFIG_FILE=",
             "global [install]": f"{tmp_path / 'etc' / 'pip' / 'pip.conf'} [install]", "site": f"{site} [global]"}
    assert named[where] in note and str(written) in note and other in note
    assert "".join(f"warning --persist: {note}".split()) in text
