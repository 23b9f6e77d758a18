"""Reading a batch's jobs: the files people write (Excel's CSV, JSON lines, comments) and the ones they should
not be trusted with (names that leave the folder, two jobs on one file, a typo in a column)."""
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fomm_doctor.batch.jobs import Job, check_output_name, default_output, folder_jobs, read_jobs
from fomm_doctor.batch.manifest import ManifestWriter, Record, read_manifest, verified
from fomm_doctor.errors import UserError

DEFAULTS = Job(Path(), Path(), "")


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_excel_csv_with_bom_comments_blank_rows_and_defaults(tmp_path):
    text = ("\ufeffSource,Driving,Output,Paste-Back,Crop,Mode\r\n# a comment row\r\n"
            "a.jpg,v.mp4,,yes,,\r\n,,,,,\r\nsub/b.png,/abs/w.mov,named,No,TRUE,Absolute\r\n")
    jobs = read_jobs(write(tmp_path, "jobs.csv", text), DEFAULTS)
    assert len(jobs) == 2
    a, b = jobs
    assert (a.source, a.driving, a.output) == (tmp_path / "a.jpg", tmp_path / "v.mp4", "a__v.mp4")
    assert (a.paste_back, a.crop, a.mode, a.row) == (True, False, "relative", 3)
    assert (b.source, b.driving, b.output) == (tmp_path / "sub" / "b.png", Path("/abs/w.mov"), "named.mp4")
    assert (b.paste_back, b.crop, b.mode, b.row) == (False, True, "absolute", 5)


def test_json_lines_take_json_types_and_flag_defaults(tmp_path):
    lines = [{"source": "a.jpg", "driving": "v.mp4", "crop": True, "audio": False},
             {"source": "b.jpg", "driving": "v.mp4", "find-best-frame": "1", "checkpoint": "vox"}]
    path = write(tmp_path, "jobs.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    a, b = read_jobs(path, Job(Path(), Path(), "", mode="avd", checkpoint="tpsmm-vox"))
    assert (a.crop, a.audio, a.mode, a.checkpoint, a.row) == (True, False, "avd", "tpsmm-vox", 1)
    assert (b.find_best_frame, b.checkpoint) == (True, "vox")


def test_a_checkpoint_beside_the_jobs_file_is_found_there(tmp_path):
    (tmp_path / "my.pth.tar").write_bytes(b"x")
    path = write(tmp_path, "jobs.csv", "source,driving,checkpoint\na.jpg,v.mp4,my.pth.tar\na.jpg,w.mp4,vox\n")
    a, b = read_jobs(path, DEFAULTS)
    assert a.checkpoint == str(tmp_path / "my.pth.tar") and b.checkpoint == "vox"


@pytest.mark.parametrize("text, words", [
    ("source,driving,colour\na.jpg,v.mp4,red\n", "row 2: unknown column 'colour'"),
    ("source,driving,crop\na.jpg,v.mp4,maybe\n", "row 2: crop must be yes or no"),
    ("source,driving,mode\na.jpg,v.mp4,sideways\n", "row 2: mode must be relative"),
    ("source,driving\na.jpg,\n", "row 2: no driving given"),
    ("photo,video\na.jpg,v.mp4\n", "the first row must name the columns"),
    ("source,driving\na.jpg,v.mp4,extra\n", "3 cells under 2 column names"),
    ("source,driving,side_by_side,paste_back\na.jpg,v.mp4,yes,yes\n", "cannot be combined"),
    ("source,driving\n", "holds no job"),
    ("source,driving,output\na.jpg,v.mp4,X.mp4\nb.jpg,v.mp4,x.MP4\n", "row 2 and row 3 would both write x.MP4"),
    ("source,driving\na.jpg,v.mp4\nb/a.png,v.mp4\n", "would both write a__v.mp4"),
])
def test_a_file_that_cannot_be_trusted_is_refused_whole_with_its_row(tmp_path, text, words):
    with pytest.raises(UserError) as err:
        read_jobs(write(tmp_path, "jobs.csv", text), DEFAULTS)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("line, words", [
    ('{"source": "a.jpg", "driving": "v.mp4"', "line 1 is not a JSON object"),
    ('["a.jpg", "v.mp4"]', "line 1 is not a JSON object but list"),
    ('{"source": "a.jpg", "driving": 7}', "driving must be text"),
])
def test_bad_json_lines(tmp_path, line, words):
    with pytest.raises(UserError) as err:
        read_jobs(write(tmp_path, "jobs.jsonl", line + "\n"), DEFAULTS)
    assert words in str(err.value)


def test_a_jobs_file_in_a_chinese_excel_encoding_gets_a_sentence(tmp_path):
    path = write(tmp_path, "jobs.csv", "source,driving\n照片.jpg,视频.mp4\n", encoding="gbk")
    with pytest.raises(UserError, match="not UTF-8 text.*CSV UTF-8"):
        read_jobs(path, DEFAULTS)
    assert read_jobs(write(tmp_path, "ok.csv", "source,driving\n照片.jpg,视频.mp4\n"), DEFAULTS)[0].output == \
        "照片__视频.mp4"


@pytest.mark.parametrize("name", ["../x.mp4", "/etc/x.mp4", "C:\\x.mp4", "C:x.mp4", "a/../../x.mp4", ".hidden.mp4",
                                  "a/.b/x.mp4", "x.mp4.exe", "x.txt", "a|b.mp4", "", "  ", "x\x00.mp4", "\\\\srv\\x.mp4"])
def test_output_names_stay_inside_the_folder(name):
    with pytest.raises(UserError):
        check_output_name(name, "row 2")


@pytest.mark.parametrize("name, kept", [("clip", "clip.mp4"), ("a/b/c.mov", "a/b/c.mov"), ("a\\b.mkv", "a/b.mkv"),
                                        ("a//b.mp4", "a/b.mp4"), (" x.mp4 ", "x.mp4")])
def test_output_names_that_are_fine(name, kept):
    assert check_output_name(name, "row 2") == kept


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_no_accepted_output_name_leaves_the_folder(name):
    try:
        kept = check_output_name(name, "row 2")
    except UserError:
        return
    root = Path("/out")
    assert (root / kept).resolve().is_relative_to(root) and not Path(kept).is_absolute()
    assert ".." not in Path(kept).parts


def test_folders_give_every_pair_in_name_order(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / "s" / name).write_bytes(b"x")
    for name in ("y.mov", "x.mp4", "readme.md"):
        (tmp_path / "d" / name).write_bytes(b"x")
    jobs = folder_jobs(tmp_path / "s", tmp_path / "d", Job(Path(), Path(), "", crop=True))
    assert [j.output for j in jobs] == ["a__x.mp4", "a__y.mp4", "b__x.mp4", "b__y.mp4"]
    assert all(j.crop and j.source.is_absolute() for j in jobs)
    assert jobs[0].where == "a.JPG with x.mp4"
    with pytest.raises(UserError, match="holds no videos"):
        folder_jobs(tmp_path / "s", tmp_path / "s", DEFAULTS)
    with pytest.raises(UserError, match="does not exist"):
        folder_jobs(tmp_path / "nope", tmp_path / "d", DEFAULTS)


def test_default_output_names_the_photo_and_the_video():
    assert default_output(Path("p/alice.jpg"), Path("v/talk.1.mp4")) == "alice__talk.1.mp4"


def test_manifest_keeps_the_last_record_and_skips_torn_or_foreign_lines(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"video bytes")
    import hashlib
    digest = hashlib.sha256(b"video bytes").hexdigest()
    with ManifestWriter(tmp_path) as m:
        m.add(Record("a.mp4", "failed", "k1", error="bad"))
        m.add(Record("a.mp4", "done", "k1", sha256=digest))
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'["not", "a record"]\n{"job": 5, "status": "done", "key": "k"}\n\xff\xfe\n{"job": "b.mp4", "sta')
    with ManifestWriter(tmp_path) as m:  # appends on a fresh line after the torn one
        m.add(Record("b.mp4", "error", "k2", error="worker died"))
    records = read_manifest(tmp_path)
    assert sorted(records) == ["a.mp4", "b.mp4"] and records["b.mp4"].status == "error"
    assert verified(records["a.mp4"], tmp_path, "k1")
    assert not verified(records["a.mp4"], tmp_path, "k2")      # other settings or inputs
    video.write_bytes(b"video bytez")
    assert not verified(records["a.mp4"], tmp_path, "k1")      # the file is not the one recorded


@pytest.mark.parametrize("address, expected", [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)),
                                               ("head", ("head", 6379)), ("ray://head", ("head", 10001)),
                                               ("[::1]:6379", ("::1", 6379))])
def test_ray_addresses(address, expected):
    from fomm_doctor.batch.on_ray import host_and_port
    assert host_and_port(address) == expected


def test_a_ray_address_with_a_bad_port_or_nobody_listening_is_one_sentence():
    import socket
    from fomm_doctor.batch.on_ray import check_reachable, host_and_port
    with pytest.raises(UserError, match="the port must be a number"):
        host_and_port("head:port")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"nothing answers at 127.0.0.1:{port}") as err:
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    assert err.value.exit_code == 3


def test_ray_actors_fit_the_cluster():
    from fomm_doctor.batch.on_ray import fit_workers, wants_gpu
    assert wants_gpu("auto", {"CPU": 64, "GPU": 8}) and not wants_gpu("auto", {"CPU": 64})
    assert not wants_gpu("cpu", {"CPU": 64, "GPU": 8}) and wants_gpu("cuda", {"GPU": 1})
    with pytest.raises(UserError, match="the Ray cluster has none"):
        wants_gpu("cuda:0", {"CPU": 8})
    assert fit_workers({"CPU": 64, "GPU": 8}, True, 1) == 8
    assert fit_workers({"CPU": 64}, False, 1) == 64 and fit_workers({"CPU": 64}, False, 4) == 16
    assert fit_workers({"CPU": 1}, False, 4) == 1
    assert fit_workers({"CPU": 64, "memory": 16 * 2 ** 30}, False, 1) == 12  # 1.25 GB each


RESERVED = ("CON", "PRN", "AUX", "NUL", "COM1", "COM9", "LPT1", "LPT9", "CONIN$")


@pytest.mark.parametrize("name", ["con.mp4", "NUL.mkv", "com1.mp4", "lpt9.avi", "Con", "a/aux.x.mp4", "aux/x.mp4",
                                  "x" * 300 + ".mp4", "a\u202egpj.mp4", "a\u2066b.mp4", "a\u200fb.mp4", "a\u2028b.mp4",
                                  "a\x7fb.mp4", "a\x1bb.mp4", "a./b.mp4", "a /b.mp4", "\ud800.mp4",
                                  "/".join(["d" * 150] * 8) + ".mp4"])
def test_reserved_long_and_bidi_output_names_are_refused_at_plan_time(name, tmp_path):
    with pytest.raises(UserError) as err:
        check_output_name(name, "row 2")
    assert "row 2" in str(err.value) and "\n" not in str(err.value) and "\u202e" not in str(err.value)
    path = write(tmp_path, "jobs.jsonl", json.dumps({"source": "a.jpg", "driving": "v.mp4", "output": name}) + "\n")
    with pytest.raises(UserError):
        read_jobs(path, DEFAULTS)


def test_names_the_os_gives_that_are_not_utf8_are_kept():
    name = os.fsdecode(b"\xff\xfe.mp4")
    assert check_output_name(name, "row 2") == name
    assert check_output_name("照片/emoji\u200d.mp4", "row 2") == "照片/emoji\u200d.mp4"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RESERVED), st.text(alphabet="abcXYZ.0 ", max_size=8), st.booleans(),
       st.sampled_from(["", "sub/", "a/b/"]))
def test_a_reserved_windows_name_is_refused_in_any_case_and_with_any_extension(device, rest, upper, folder):
    stem = device.upper() if upper else device.lower()
    with pytest.raises(UserError):
        check_output_name(f"{folder}{stem}{'.' + rest if rest else ''}.mp4", "row 2")


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=40) | st.text(alphabet=st.characters(codec="utf-8"), min_size=190, max_size=260))
def test_an_accepted_output_name_is_one_every_file_system_takes_and_shows_as_written(name):
    import unicodedata
    from fomm_doctor.batch.jobs import BIDI_CONTROLS, NAME_BYTES, WINDOWS_DEVICES
    try:
        kept = check_output_name(name, "row 2")
    except UserError as err:
        assert "\n" not in str(err) and not any(c in str(err) for c in BIDI_CONTROLS)
        return
    for part in Path(kept).parts:
        assert len(os.fsencode(part)) <= NAME_BYTES
        assert part.split(".")[0].rstrip(" ").upper() not in WINDOWS_DEVICES
        assert not part.endswith((" ", "."))
    for c in kept:
        assert c not in BIDI_CONTROLS and unicodedata.category(c) not in ("Cc", "Zl", "Zp")
        assert unicodedata.category(c) != "Cs" or "\udc80" <= c <= "\udcff"


def test_a_record_planted_or_copied_from_another_folder_does_not_verify(tmp_path):
    from fomm_doctor.batch.manifest import read_records
    from fomm_doctor.batch.seal import Seal
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with ManifestWriter(a, Seal.for_folder(a)) as m:
        m.add(Record("x.mp4", "failed", "k1", error="ours"))
    (b / "manifest.jsonl").write_bytes((a / "manifest.jsonl").read_bytes())  # copied: signed for another folder
    planted = json.dumps({"job": "y.mp4", "status": "failed", "key": "k2", "error": "theirs", "sig": "0" * 64})
    with open(a / "manifest.jsonl", "a", encoding="utf-8") as f:
        f.write(planted + "\n")
    records, ignored = read_records(a, Seal.for_folder(a))
    assert list(records) == ["x.mp4"] and records["x.mp4"].error == "ours" and ignored == 1
    assert read_records(b, Seal.for_folder(b)) == ({}, 1)


def test_a_manifest_line_keeps_a_name_that_is_not_utf8(tmp_path):
    name = os.fsdecode(b"\xff__clip.mp4")
    with ManifestWriter(tmp_path) as m:
        m.add(Record(name, "failed", "k", source=os.fsdecode(b"/p/\xff.png")))
    (tmp_path / "manifest.jsonl").read_bytes().decode("utf-8")  # still UTF-8 text
    record = read_manifest(tmp_path)[name]
    assert os.fsencode(record.job) == b"\xff__clip.mp4" and os.fsencode(record.source) == b"/p/\xff.png"


def test_a_failure_of_the_machine_is_told_from_a_failure_of_the_input():
    import errno
    from fomm_core.errors import FommError
    from fomm_doctor.batch.worker import environment_failure
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise FommError("could not write job.mp4.") from None
    except FommError as err:
        assert environment_failure(err) == os.strerror(errno.ENOSPC)
    assert environment_failure(FommError("v.mp4 has no video frame that can be decoded")) == ""
