"""fomm_core.private: folders another local user could plant first are refused, ours are made private."""
import os
import stat
import sys

import pytest

from fomm_core.errors import FommError
from fomm_core.private import create_new, private_dir

posix = pytest.mark.skipif(sys.platform == "win32", reason="owner and mode bits are POSIX facts")


@posix
def test_a_new_folder_is_0700_and_an_open_one_of_ours_is_closed(tmp_path):
    made = private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(os.lstat(made).st_mode) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o777)
    os.chmod(wide, 0o777)
    private_dir(wide)
    assert stat.S_IMODE(os.lstat(wide).st_mode) == 0o700


def test_a_link_in_place_of_the_folder_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "theirs"
    target.mkdir()
    os.chmod(target, 0o755)
    link = tmp_path / "cache"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(FommError, match="is a link"):
        private_dir(link)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o755


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "cache").write_bytes(b"x")
    with pytest.raises(FommError, match="is not a folder"):
        private_dir(tmp_path / "cache")


@posix
@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_folder_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(FommError, match="another user"):
        private_dir(theirs)


def test_create_new_refuses_a_planted_name_and_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"ours")
    planted = tmp_path / "planted"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(planted)
    with pytest.raises(FileExistsError):
        create_new(victim)
    assert victim.read_bytes() == b"ours"
    fd = create_new(tmp_path / "fresh")
    os.close(fd)
    if sys.platform != "win32":
        assert stat.S_IMODE(os.lstat(tmp_path / "fresh").st_mode) == 0o600


def test_a_fast_path_table_planted_behind_a_link_is_not_used_nor_written_through(tmp_path, monkeypatch):
    from fomm_core.inference import choice

    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    name = choice._key("f" * 16, 64, 2, 4) + ".json"
    planted = '{"rows": [{"precision": "bf16", "fps": 1000.0, "psnr": 99.0}], "cpu": "x"}'
    (theirs / name).write_text(planted, encoding="utf-8")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fast-path").symlink_to(theirs, target_is_directory=True)
    measured = [choice.Row("fp32", fps=5.0)]
    assert choice.cached_rows("f" * 16, 64, 2, lambda: measured) == measured
    assert (theirs / name).read_text(encoding="utf-8") == planted
    assert sorted(p.name for p in theirs.iterdir()) == [name]

    # a folder of ours: the table is kept and read back
    (tmp_path / "cache" / "fast-path").unlink()
    assert choice.cached_rows("f" * 16, 64, 2, lambda: measured) == measured
    again = choice.cached_rows("f" * 16, 64, 2, lambda: [])
    assert [(r.precision, r.fps) for r in again] == [("fp32", 5.0)]


@posix
def test_open_plain_takes_a_plain_file_and_refuses_a_link_a_pipe_and_a_folder(tmp_path):
    import errno

    from fomm_core.private import open_plain

    plain = tmp_path / "plain"
    plain.write_bytes(b"data")
    fd = open_plain(plain)
    assert os.read(fd, 10) == b"data"
    os.close(fd)
    (tmp_path / "link").symlink_to(plain)
    os.mkfifo(tmp_path / "pipe")
    for name, flags, code in (("link", os.O_RDONLY, errno.ELOOP), ("pipe", os.O_RDONLY, errno.EINVAL),
                              ("pipe", os.O_WRONLY, errno.EINVAL), (".", os.O_RDONLY, errno.EINVAL)):
        with pytest.raises(OSError) as err:   # never a hang on the pipe, never the link's target
            open_plain(tmp_path / name, flags)
        assert err.value.errno == code, name
    assert plain.read_bytes() == b"data"
