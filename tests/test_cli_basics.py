from conftest import run_cli


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    for name in ("check", "install", "demo", "animate", "live", "crop", "bench", "checkpoints"):
        assert name in out.stdout


def test_unknown_command_is_usage_error():
    out = run_cli("no-such-command")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, read, released."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_network_is_not_a_usage_error(tmp_path):
    from fomm_doctor.errors import ExitCode
    url = f"http://127.0.0.1:{_closed_port()}/vox-cpk.pth.tar"
    # one retry (half a second) rather than the default six attempts' 15 s of backing off
    out = run_cli("checkpoints", "fetch", "vox", "--mirror", url, "--dir", str(tmp_path / "ck"), "--retries", "2")
    assert out.returncode == ExitCode.NETWORK == 3, out.stderr
    assert "refused" in out.stderr and "Traceback" not in out.stderr
    assert not any((tmp_path / "ck").rglob("*.pth.tar"))
    out = run_cli("checkpoints", "fetch", "vox", "--mirror", url, "--dir", str(tmp_path / "ck"), "--retries", "0")
    assert out.returncode == ExitCode.USAGE == 2 and out.stderr == "error: --retries must be at least 1, not 0.\n"


def test_bad_input_is_a_usage_error(tmp_path):
    out = run_cli("animate", str(tmp_path / "missing.png"), str(tmp_path / "missing.mp4"), "-o",
                  str(tmp_path / "out.mp4"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "does not exist" in out.stderr


def test_version_names_the_tool_torch_and_python():
    import platform
    from importlib.metadata import version
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("fomm-doctor 0.") and f"Python {platform.python_version()}" in line
    assert f"torch {version('torch')}" in line


def test_help_shows_no_type_for_flags():
    """A flag takes no value; `<bool>` beside it reads as if it wanted one."""
    for args in (["--help"], ["check", "--help"], ["animate", "--help"], ["install", "--help"],
                 ["checkpoints", "fetch", "--help"], ["live", "--help"]):
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
        assert "--help" in out.stdout and "<bool>" not in out.stdout, args
    assert "<float>" in run_cli("check", "--help").stdout  # options that take a value keep their type


def test_shared_options_have_one_help_text_in_every_command():
    """--device, --config, --checkpoint, --precision and --mode are spelled once (fomm_doctor.commands.options)."""
    import typer.main

    from fomm_doctor.cli import app
    command = typer.main.get_command(app)
    helps = {}
    for name in ("animate", "live", "batch", "demo"):
        for param in command.commands[name].params:
            if param.opts[0] in ("--device", "--config", "--checkpoint", "--precision", "--mode"):
                # the part before a command's own reason for its default, and without that default
                helps.setdefault(param.opts[0], set()).add(param.help.split("(default:")[0].split(". ")[0].rstrip("."))
    assert set(helps) == {"--device", "--config", "--checkpoint", "--precision", "--mode"}
    assert all(len(texts) == 1 for texts in helps.values()), helps


def test_help_starts_without_the_network_libraries():
    """`--help` (and every command's start) loads no HTTP library: requests and urllib3 cost about 0.15 s of a
    0.4-s start, and only install, check and the fetches need them."""
    import subprocess
    import sys
    probe = ("import sys\nfrom fomm_doctor.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('requests', 'urllib3', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
