"""Who the page answers (fomm_doctor.ui.guard) and what it keeps (fomm_doctor.ui.session), as plain functions:
Host headers (IPv6 brackets, ports, case, trailing dot, garbage), USER:PASS, pruning of the page's own folders."""
import os
import string
import time

import pytest
from hypothesis import given, strategies as st

from fomm_core.errors import FommError
from fomm_doctor.errors import UserError
from fomm_doctor.ui import guard, session
from fomm_doctor.ui.actions import AnimateRequest, Animations

label = st.text(string.ascii_letters + string.digits, min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=4).map(".".join).filter(lambda n: not n.replace(".", "").isdigit())
ports = st.integers(1, 65535)


@given(names, st.none() | ports, st.booleans())
def test_a_host_name_is_read_in_one_spelling(name, port, dot):
    header = name + ("." if dot else "") + (f":{port}" if port else "")
    assert guard.parse_host(header) == (name.lower(), port)
    assert guard.parse_host(header.upper()) == (name.lower(), port)


@given(st.ip_addresses(v=6), st.none() | ports)
def test_an_ipv6_address_is_read_in_brackets_only(address, port):
    assert guard.parse_host(f"[{address.exploded.upper()}]" + (f":{port}" if port else "")) == (str(address), port)
    assert guard.parse_host(address.exploded) is None or ":" not in address.exploded


@given(st.ip_addresses(v=4), ports)
def test_an_ipv4_address_is_read(address, port):
    assert guard.parse_host(f"{address}:{port}") == (str(address), port)


@given(st.text(max_size=40))
def test_any_text_is_a_host_or_none_never_an_error(text):
    parsed = guard.parse_host(text)
    if parsed is not None:
        name, port = parsed
        assert name == name.lower() and not name.endswith(".") and name.isascii()
        assert port is None or 0 < port < 65536
        assert guard.parse_host(name if ":" not in name else f"[{name}]") == (name, None)


@pytest.mark.parametrize("bad", ["", " ", "::1", "[::1", "[::1]x", "[::1]:", "a:", "a:0", "a:65536", "a:+80",
                                 "a:8 0", "a b", "a..b", "-a.b", "é.example", "999.1.1.1", "127.1", "a:80:80",
                                 "[v1.x]", "[fe80::1%25eth0]", "a/b", "a@b", "localhost.."])
def test_garbage_is_no_host(bad):
    assert guard.parse_host(bad) is None


@given(st.text(max_size=40))
def test_only_our_names_at_our_port_are_allowed(text):
    names_ = guard.own_names("127.0.0.1")
    allowed = guard.host_allowed(text, names_, 7860)
    assert allowed == (guard.parse_host(text) in {(n, 7860) for n in names_})


def test_our_names_and_the_attackers():
    ours = guard.own_names("127.0.0.1")
    for good in ["127.0.0.1:7860", "localhost:7860", "LOCALHOST.:7860", "[::1]:7860", "[0:0::1]:7860"]:
        assert guard.host_allowed(good, ours, 7860), good
    for bad in ["evil.example:7860", "evil.example", "127.0.0.1:7861", "127.0.0.1", "localhost.evil.example:7860",
                "10.0.0.5:7860", None, ""]:
        assert not guard.host_allowed(bad, ours, 7860), bad
    everywhere = guard.own_names("0.0.0.0")
    assert guard.host_allowed("10.0.0.5:7860", everywhere, 7860, any_address=True)
    assert not guard.host_allowed("evil.example:7860", everywhere, 7860, any_address=True)
    assert guard.host_allowed("abc.gradio.live", ours, 7860, any_port={"abc.gradio.live"})


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                         ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                         ("192.168.1.5", False), ("mybox.lan", False)])
def test_which_addresses_keep_the_page_here(host, local):
    assert guard.is_loopback(host) == local


@given(st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=20), st.text(min_size=1))
def test_user_and_password_round_trip(user, password):
    assert guard.parse_auth(f"{user}:{password}") == (user, password)


@pytest.mark.parametrize("bad", ["alice", "alice:", ":pw", "", " alice:pw", "al ice:pw", "al\x00ice:pw"])
def test_a_bad_user_and_password_is_one_sentence(bad):
    with pytest.raises(UserError, match="--auth"):
        guard.parse_auth(bad)


def test_a_session_is_new_private_and_prunes_only_the_pages_own_folders(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "id_rsa").write_text("secret")
    old = [results / f"page-2000010{i}-000000-abcdefgh" for i in range(1, 8)]
    for path in old:
        path.mkdir()
        (path / "a-b-1.mp4").write_bytes(b"old")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (results / "page-20000109-000000-linklink").symlink_to(elsewhere)
    (results / "page-notes").mkdir()
    made = session.open_session(results)
    assert made.parent == results and session.SESSION.fullmatch(made.name)
    assert oct(made.stat().st_mode & 0o777) == "0o700" and not any(made.iterdir())
    kept = sorted(p.name for p in results.iterdir() if session.SESSION.fullmatch(p.name) and not p.is_symlink())
    assert kept == sorted([p.name for p in old[-(session.KEEP_SESSIONS - 1):]] + [made.name])
    assert (results / "id_rsa").read_text() == "secret" and (results / "page-notes").is_dir()
    assert (elsewhere / "keep.txt").read_text() == "keep" and (results / "page-20000109-000000-linklink").is_symlink()
    assert session.open_session(results) != made


def test_an_unusable_results_folder_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FommError, match="cannot create a folder for the page's results"):
        session.open_session(tmp_path / "file")


def test_uploads_and_results_are_pruned_by_count_oldest_first(tmp_path):
    folder = session.open_session(tmp_path)
    for i in range(5):
        up = folder / f"{i:064x}"
        up.mkdir()
        os.utime(up, (time.time() - 100 + i, time.time() - 100 + i))
    (folder / "vibe_edit_history").mkdir()
    session.prune_uploads(folder, 2)
    assert sorted(p.name for p in folder.iterdir()) == [f"{3:064x}", f"{4:064x}", "vibe_edit_history"]


def test_a_video_never_replaces_a_file_already_there(tmp_path):
    """A name an earlier run (or anyone) left is skipped, not written over."""
    animations = Animations(tmp_path, keep=3)
    request = AnimateRequest("photo.jpg", "clip.mp4")
    (tmp_path / "photo-clip-1.mp4").write_bytes(b"earlier")
    assert animations._output(request).name == "photo-clip-2.mp4"
    assert (tmp_path / "photo-clip-1.mp4").read_bytes() == b"earlier"
    for i in range(2, 6):
        (tmp_path / f"photo-clip-{i}.mp4").write_bytes(b"x")
        os.utime(tmp_path / f"photo-clip-{i}.mp4", (time.time() + i, time.time() + i))
    animations._output(request)
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["photo-clip-4.mp4", "photo-clip-5.mp4"]
