"""pip.* judges and pip config reading from real files and environment variables."""
import pytest

from fomm_doctor.install import pip_config
from fomm_doctor.checks import pip as pipchk
from fomm_doctor.resources import load_wheels_index

INDEX = load_wheels_index()


def plat(platform="linux", env=None, home="/home/u", prefix="/venv"):
    return {"platform": platform, "env": env or {}, "home": home, "prefix": prefix}


def test_config_file_locations_per_platform(tmp_path):
    linux = [f["path"] for f in pip_config.pip_config_files(plat())]
    assert linux == ["/etc/xdg/pip/pip.conf", "/etc/pip.conf", "/home/u/.pip/pip.conf",
                     "/home/u/.config/pip/pip.conf", "/venv/pip.conf"]
    win = pip_config.pip_config_files(plat("win32", {"APPDATA": r"C:\Users\u\AppData\Roaming",
                                                     "PROGRAMDATA": r"C:\ProgramData"}, r"C:\Users\u", r"C:\venv"))
    paths = [f["path"] for f in win]
    assert paths[0] == r"C:\ProgramData\pip\pip.ini"
    assert r"C:\Users\u\AppData\Roaming\pip\pip.ini" in paths and paths[-1] == r"C:\venv\pip.ini"
    # macOS: pip reads ~/Library/Application Support/pip/pip.conf when that folder exists, else
    # ~/.config/pip/pip.conf (never both, and XDG_CONFIG_HOME does not count there).
    home = str(tmp_path)
    mac = [f["path"] for f in pip_config.pip_config_files(plat("darwin", {"XDG_CONFIG_HOME": "/x"}, home=home))]
    assert mac == ["/Library/Application Support/pip/pip.conf", f"{home}/.pip/pip.conf",
                   f"{home}/.config/pip/pip.conf", "/venv/pip.conf"]
    (tmp_path / "Library" / "Application Support" / "pip").mkdir(parents=True)
    mac = [f["path"] for f in pip_config.pip_config_files(plat("darwin", home=home))]
    assert mac == ["/Library/Application Support/pip/pip.conf", f"{home}/.pip/pip.conf",
                   f"{home}/Library/Application Support/pip/pip.conf", "/venv/pip.conf"]


def test_user_config_file_is_where_pip_config_user_writes(tmp_path):
    assert pip_config.user_config_file(plat()) == "/home/u/.config/pip/pip.conf"
    assert pip_config.user_config_file(plat(env={"XDG_CONFIG_HOME": "/cfg", "PIP_CONFIG_FILE": "/x.conf"})) == \
        "/cfg/pip/pip.conf"
    assert pip_config.user_config_file(plat("win32", {"APPDATA": r"C:\Users\u\AppData\Roaming"}, r"C:\Users\u")) \
        == r"C:\Users\u\AppData\Roaming\pip\pip.ini"
    assert pip_config.user_config_file(plat("darwin", home=str(tmp_path))) == f"{tmp_path}/.config/pip/pip.conf"
    (tmp_path / "Library" / "Application Support" / "pip").mkdir(parents=True)
    assert pip_config.user_config_file(plat("darwin", home=str(tmp_path))) == \
        f"{tmp_path}/Library/Application Support/pip/pip.conf"


def test_pip_config_file_env_and_devnull(tmp_path):
    f = tmp_path / "my.conf"
    f.write_text("[global]\nindex-url = https://example.org/simple\n")
    files = pip_config.pip_config_files(plat(env={"PIP_CONFIG_FILE": str(f)}))
    assert files[-1] == {"kind": "env", "path": str(f)}
    assert not any(x["kind"] == "user" for x in files)  # pip skips user files when PIP_CONFIG_FILE exists
    assert pip_config.pip_config_files(plat(env={"PIP_CONFIG_FILE": "/dev/null"})) == []


def test_read_config_precedence_real_files(tmp_path):
    user = tmp_path / "user.conf"
    user.write_text("[global]\nindex-url = https://user.example/simple\n"
                    "extra-index-url =\n  https://a.example/simple\n  https://b.example/simple\n")
    site = tmp_path / "site.conf"
    site.write_text("[global]\nindex_url = https://site.example/simple\n"
                    "[install]\nfind-links = /wheels\n")
    cfg = pip_config.read_pip_index_config({}, [{"path": str(user)}, {"path": str(site)},
                                                {"path": str(tmp_path / "missing.conf")}])
    assert cfg["index_url"] == "https://site.example/simple"
    assert cfg["extra_index_urls"] == ["https://a.example/simple", "https://b.example/simple"]
    assert cfg["find_links"] == ["/wheels"]
    assert cfg["sources"]["index_url"].startswith(str(site))
    assert cfg["files_read"] == [str(user), str(site)]
    env = {"PIP_INDEX_URL": "https://env.example/simple", "PIP_EXTRA_INDEX_URL": "https://x/s https://y/s"}
    cfg = pip_config.read_pip_index_config(env, [str(user)])
    assert cfg["index_url"] == "https://env.example/simple" and cfg["sources"]["index_url"] == "environment PIP_INDEX_URL"
    assert cfg["extra_index_urls"] == ["https://x/s", "https://y/s"]


def test_install_section_beats_global(tmp_path):
    f = tmp_path / "pip.conf"
    f.write_text("[install]\nindex-url = https://install.example/simple\n[global]\nindex-url = https://g.example/s\n")
    assert pip_config.read_pip_index_config({}, [str(f)])["index_url"] == "https://install.example/simple"


def test_default_and_broken_config(tmp_path):
    assert pip_config.read_pip_index_config({}, [])["sources"]["index_url"] == "default"
    bad = tmp_path / "bad.conf"
    bad.write_text("index-url = no section header\n")
    cfg = pip_config.read_pip_index_config({}, [str(bad)])
    assert cfg["errors"] and str(bad) in cfg["errors"][0]
    r = pipchk.judge_index(cfg, plat())
    assert r.status == "warn" and str(bad) in r.fix


def test_redact_masks_every_url_in_a_text():
    from fomm_doctor.net.redact import redact as m
    assert m("https://alice:s3cret@pkgs.example/simple") == "https://alice:****@pkgs.example/simple"
    assert m("https://tok123@pkgs.example/simple") == "https://****@pkgs.example/simple"
    assert m("https://pypi.org/simple") == "https://pypi.org/simple"
    assert m("/local/wheels") == "/local/wheels"
    assert m("pip failed: https://u:p@a@h/s and http://x:y@z:8/q") == "pip failed: https://u:****@h/s and http://x:****@z:8/q"


def test_index_judge_masks_credentials():
    cfg = pip_config.read_pip_index_config({"PIP_INDEX_URL": "https://bob:hunter2@corp.example/simple"}, [])
    r = pipchk.judge_index(cfg, plat())
    assert "hunter2" not in r.summary and "hunter2" not in str(r.details) and "bob:****@corp.example" in r.summary


def test_pip_version_judge_platform_fix():
    old = pipchk.judge_version({"version": "19.2.3"}, {"platform": "win32"}, INDEX)
    assert old.status == "warn" and old.fix == "py -m pip install --upgrade pip"
    assert "pip install update" in old.summary
    old_linux = pipchk.judge_version({"version": "20.0"}, {"platform": "linux"}, INDEX)
    assert old_linux.fix == "python3 -m pip install --upgrade pip"
    new = pipchk.judge_version({"version": "25.2"}, {"platform": "linux"}, INDEX)
    assert new.status == "ok" and new.details["resumes_downloads"] is True
    assert pipchk.judge_version({"version": "24.0"}, {"platform": "linux"}, INDEX).details["resumes_downloads"] is False
    missing = pipchk.judge_version({"version": None}, {"platform": "darwin"}, INDEX)
    assert missing.status == "fail" and "ensurepip" in missing.fix


def test_probe_pip_version_matches_installed_pip():
    import pip
    assert pipchk.probe_pip_version()["version"] == pip.__version__


def test_gbk_config_is_read_not_reported_broken(tmp_path):
    """Chinese Windows saves pip.ini in its ANSI code page (GBK); `check` must still read the index from it."""
    f = tmp_path / "pip.ini"
    text = "# 清华镜像，公司网络用\r\n[global]\r\nindex-url = https://pypi.tuna.tsinghua.edu.cn/simple\r\n"
    f.write_bytes(text.encode("gbk"))
    cfg = pip_config.read_pip_index_config({}, [str(f)])
    assert cfg["errors"] == [] and cfg["files_read"] == [str(f)]
    assert cfg["index_url"] == "https://pypi.tuna.tsinghua.edu.cn/simple"


def test_config_keys_read_as_pip_normalises_them(tmp_path):
    f = tmp_path / "pip.conf"
    f.write_text("[global]\nINDEX_URL: https://colon.example/simple\n"
                 "[install]\n--extra-index-url = https://x/s\nindex-url =\n")
    cfg = pip_config.read_pip_index_config({}, [str(f)])
    # pip ignores the empty [install] index-url, so the [global] one stands
    assert cfg["index_url"] == "https://colon.example/simple" and cfg["extra_index_urls"] == ["https://x/s"]


def test_decode_config_encodings(monkeypatch):
    assert pip_config.decode_config("[global]\n# 中文\n".encode("utf-8")) == ("[global]\n# 中文\n", "utf-8")
    assert pip_config.decode_config(b"\xef\xbb\xbf[global]\n") == ("[global]\n", "utf-8-sig")
    assert pip_config.decode_config("# 中文\n".encode("gbk"))[1] == "gbk"
    monkeypatch.setattr("locale.getpreferredencoding", lambda do_setlocale=True: "cp1252")
    assert pip_config.decode_config("# café\n".encode("cp1252")) == ("# café\n", "cp1252")
    monkeypatch.setattr("locale.getpreferredencoding", lambda do_setlocale=True: "UTF-8")
    import pytest
    with pytest.raises(ValueError, match="not utf-8 or gbk text"):
        pip_config.decode_config(b"\xff\xff\x80")


def test_byte_order_mark_is_reported_as_pip_reports_it(tmp_path):
    """pip refuses a pip.conf that starts with a UTF-8 BOM (Notepad's old "UTF-8"), so `check` must not show
    its index as the one in use."""
    import os
    import subprocess
    import sys
    f = tmp_path / "pip.conf"
    f.write_bytes(b"\xef\xbb\xbf[global]\nindex-url = https://bom.example/simple\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=str(f), HOME=str(tmp_path), XDG_CONFIG_DIRS=str(tmp_path / "none"))
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode != 0 and "no section headers" in listed.stderr + listed.stdout
    cfg = pip_config.read_pip_index_config({}, [str(f)])
    assert cfg["index_url"] == pip_config.PYPI_SIMPLE and "byte-order mark" in cfg["errors"][0]
    assert pipchk.judge_index(cfg, plat()).status == "warn"


def test_require_torch_names_the_pip_command_of_this_platform(monkeypatch):
    """One spelling of 'pip in this Python' (checks.common.pip_cmd), also in the sentence for a missing torch."""
    import sys
    from fomm_doctor.checks.common import pip_cmd
    from fomm_doctor.animation import require_torch
    from fomm_doctor.errors import UserError
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ModuleNotFoundError
    with pytest.raises(UserError) as err:
        require_torch()
    assert str(err.value).startswith("PyTorch is not installed; run `fomm-doctor install --yes`")
    command = pip_cmd(sys.platform, 'install "fomm-doctor[torch]"')
    assert f"(or `{command}`)" in str(err.value)
    assert pip_cmd("win32", "install x") == "py -m pip install x" and pip_cmd("linux", "x") == "python3 -m pip x"
