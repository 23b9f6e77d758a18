"""Telling a web page from a file by its first bytes: a sign-in, quota or "confirm download" page is what a
cloud drive answers instead of the file, often labelled as a binary."""


def looks_like_html(head: bytes) -> bool:
    """The first bytes of a web page, not of a file: what a download checks its first block with and what
    `checkpoints add` checks a saved file with."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].lower()
    return start.startswith((b"<!doctype", b"<html", b"<head")) or b"<html" in head[:512].lower()
