"""Reading cloud-drive pages: Google Drive's confirmation forms (GET with hidden inputs, POST with everything in
the action URL) and older confirm links, pages that are not confirmations (quota, sign-in), saved pages, folder
listings, share links, Yandex Disk API requests, the HF_ENDPOINT rewrite."""
from urllib.parse import parse_qs, urlparse

import pytest

from fomm_doctor.net import cloud_drive as cd

FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>
<input type="hidden" name="id" value="1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3"><input type="hidden" name="export"
value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid"
value="0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"></form></div></body></html>"""

OLD_PAGE = """<html><body><p>Google Drive can't scan this file for viruses.</p>
<a id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action"
href="/uc?export=download&amp;confirm=Xy_9&amp;id=1kZ1gCnpfU0BnpdU47pLM_TQ6RypDDqgw">Download anyway</a></body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Sorry, you can't view or download this file at this time.</p><p>Too many users have viewed or downloaded this
file recently. Please try accessing the file again later.</p></body></html>"""

LISTING = """<html><body><div class="flip-entries">
<div class="flip-entry" id="entry-1SubFolderIdAAAAAAAAAAAAAAAAAAAAA" tabindex="0" role="link">
<a href="https://drive.google.com/drive/folders/1SubFolderIdAAAAAAAAAAAAAAAAAAAAA" target="_blank">
<div class="flip-entry-info"><div class="flip-entry-title">old</div></div></a></div>
<div class="flip-entry" id="entry-1VoxFileIdBBBBBBBBBBBBBBBBBBBBBBB" tabindex="0" role="link">
<a href="https://drive.google.com/file/d/1VoxFileIdBBBBBBBBBBBBBBBBBBBBBBB/view?usp=drive_web" target="_blank">
<div class="flip-entry-thumb"></div><div class="flip-entry-info"><div class="flip-entry-title">vox-cpk.pth.tar</div>
<div class="flip-entry-last-modified"><div>Mar 29, 2020</div></div></div></a></div>
<div class="flip-entry" id="entry-1FashionIdCCCCCCCCCCCCCCCCCCCCCCC"><a href="https://drive.google.com/file/d/1FashionIdCCCCCCCCCCCCCCCCCCCCCCC/view">
<div class="flip-entry-title">fashion.pth.tar</div></a></div></div></body></html>"""


def test_download_form_rebuilds_the_real_download_url():
    url = cd.confirmation_url(FORM_PAGE, "https://drive.google.com/uc?export=download&id=1coU")
    parts = urlparse(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "drive.usercontent.google.com", "/download")
    assert parse_qs(parts.query) == {"id": ["1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3"], "export": ["download"],
                                     "confirm": ["t"], "uuid": ["0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"]}


def test_relative_form_action_is_joined_to_the_page_url():
    page = FORM_PAGE.replace("https://drive.usercontent.google.com/download", "/download")
    url = cd.confirmation_url(page, "http://127.0.0.1:8123/uc?id=x")
    assert url.startswith("http://127.0.0.1:8123/download?id=1coU")


def test_older_confirm_link_is_followed():
    url = cd.confirmation_url(OLD_PAGE, "https://drive.google.com/uc?export=download&id=1kZ1")
    assert url == "https://drive.google.com/uc?export=download&confirm=Xy_9&id=1kZ1gCnpfU0BnpdU47pLM_TQ6RypDDqgw"
    assert cd.query_param(url, "confirm") == "Xy_9"


def test_pages_that_are_not_confirmations_give_none_and_a_reason():
    assert cd.confirmation_url(QUOTA_PAGE, "https://drive.google.com/uc?id=x") is None
    assert "quota" in cd.page_reason(QUOTA_PAGE)
    signin = "<html><body><form action='/ServiceLogin' method='post'><input name='Email'></form>Sign in</body></html>"
    assert cd.confirmation_url(signin, "https://accounts.google.com/") is None
    assert "sign in" in cd.page_reason(signin)
    assert cd.confirmation_request(signin, "https://accounts.google.com/") is None


POST_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p><p class="uc-warning-subcaption">
<span class="uc-name-size"><a href="/open?id=1jmcn19-c3p8mf39aYNXUhdMqzqDYZhQ_">vox-cpk.pth.tar</a> (695M)</span> is too
large for Google to scan for viruses.</p><form id="download-form" action="https://drive.google.com/uc?export=download&amp;id=1jmcn19-c3p8mf39aYNXUhdMqzqDYZhQ_&amp;confirm=t&amp;uuid=ff4a3f3d-e2d7-4e71-937c-2b95144828cf"
method="post"><input type="submit" id="uc-download-link" value="Download anyway"/></form></body></html>"""


def test_post_forms_are_followed_with_their_fields():
    follow = cd.confirmation_request(FORM_PAGE.replace('method="get"', 'method="post"'), "https://drive.google.com/uc")
    assert (follow.method, follow.url) == ("POST", "https://drive.usercontent.google.com/download")
    assert dict(follow.fields) == {"id": "1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3", "export": "download", "confirm": "t",
                                   "uuid": "0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"}
    # the 2022 form: no inputs, confirm=t already in its action URL
    follow = cd.confirmation_request(POST_PAGE, "https://drive.google.com/uc?export=download&id=1jmcn19")
    assert follow.method == "POST" and follow.fields == ()
    url = cd.confirmation_url(POST_PAGE, "https://drive.google.com/uc")
    assert parse_qs(urlparse(url).query) == {"export": ["download"], "id": ["1jmcn19-c3p8mf39aYNXUhdMqzqDYZhQ_"],
                                             "confirm": ["t"], "uuid": ["ff4a3f3d-e2d7-4e71-937c-2b95144828cf"]}
    # GET of the form: a field given both in the action and as an input is sent once, with the input's value
    both = cd.Follow("POST", "http://h/uc?id=a&confirm=old", (("confirm", "t"),))
    assert parse_qs(urlparse(both.as_get_url()).query) == {"id": ["a"], "confirm": ["t"]}


def test_a_saved_page_names_the_file_it_stands_for():
    assert cd.saved_page_facts(POST_PAGE) == {"file": "vox-cpk.pth.tar", "drive_id": "1jmcn19-c3p8mf39aYNXUhdMqzqDYZhQ_",
                                              "size": "695M"}
    assert cd.saved_page_facts(FORM_PAGE)["drive_id"] == "1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3"
    assert cd.saved_page_facts(QUOTA_PAGE) is None


def test_hf_endpoint_replaces_the_huggingface_host_only():
    url = "https://huggingface.co/MCMLXXXVII/thinplatesv1/resolve/main/vox-cpk.pth.tar"
    assert cd.hf_endpoint_url(url, "https://hf-mirror.com") == \
        "https://hf-mirror.com/MCMLXXXVII/thinplatesv1/resolve/main/vox-cpk.pth.tar"
    assert cd.hf_endpoint_url(url, "http://127.0.0.1:8080/hf/") == \
        "http://127.0.0.1:8080/hf/MCMLXXXVII/thinplatesv1/resolve/main/vox-cpk.pth.tar"
    assert cd.hf_endpoint_url(url, None) == url and cd.hf_endpoint_url(url, "") == url
    assert cd.hf_endpoint_url("https://example.org/x.pth.tar", "https://hf-mirror.com") == "https://example.org/x.pth.tar"
    with pytest.raises(ValueError):
        cd.hf_endpoint_url(url, "hf-mirror.com")


def test_share_links_to_direct_links():
    assert cd.google_drive_file_url("https://drive.google.com/file/d/1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3/view?usp=sharing") \
        == "https://drive.google.com/uc?export=download&id=1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3"
    assert cd.google_drive_id("https://drive.google.com/open?id=1kZ1gCnpfU0BnpdU47pLM_TQ6RypDDqgw") \
        == "1kZ1gCnpfU0BnpdU47pLM_TQ6RypDDqgw"
    assert cd.google_drive_folder_listing_url(
        "https://drive.google.com/drive/folders/1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH?usp=sharing") \
        == "https://drive.google.com/embeddedfolderview?id=1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH"
    assert cd.google_drive_id("https://example.org/file/d/1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3") is None
    assert cd.google_drive_file_url("https://example.org/x.pth.tar") == "https://example.org/x.pth.tar"


def test_folder_listing_finds_the_file_by_its_title():
    assert cd.google_drive_file_in_listing(LISTING, "vox-cpk.pth.tar") \
        == "https://drive.google.com/file/d/1VoxFileIdBBBBBBBBBBBBBBBBBBBBBBB/view"
    assert cd.google_drive_file_in_listing(LISTING, "fashion.pth.tar").endswith("1FashionIdCCCCCCCCCCCCCCCCCCCCCCC/view")
    assert cd.google_drive_file_in_listing(LISTING, "taichi-cpk.pth.tar") is None
    assert cd.google_drive_file_in_listing(LISTING, "old") is None  # a subfolder is not a file


def test_yandex_public_api_request():
    url = cd.yandex_download_api_url("https://yadi.sk/d/lEw8uRm140L_eQ", "vox-cpk.pth.tar")
    parts = urlparse(url)
    assert parts.netloc == "cloud-api.yandex.net" and parts.path == "/v1/disk/public/resources/download"
    assert parse_qs(parts.query) == {"public_key": ["https://yadi.sk/d/lEw8uRm140L_eQ"], "path": ["/vox-cpk.pth.tar"]}
    other = cd.yandex_download_api_url("https://yadi.sk/d/x", None, api="http://127.0.0.1:9/api")
    assert other.startswith("http://127.0.0.1:9/api?public_key=")
    assert "path" not in parse_qs(urlparse(cd.yandex_download_api_url("https://yadi.sk/d/M0FWpz2ExBfgAA")).query)
    assert cd.is_yandex("https://yadi.sk/d/x") and cd.is_yandex("https://disk.yandex.ru/d/x")
    assert not cd.is_yandex("https://drive.google.com/x")
