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
