"""Talking to the network safely: resumable verified downloads, bounded page reads, cloud-drive links
(Google Drive, Yandex Disk, Hugging Face) and credential redaction. Knows no model: the callers pass in where
files go, the download cache folder included.
"""
