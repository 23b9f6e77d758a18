"""Talking to the network safely: resumable verified downloads, bounded page reads, cloud-drive links
(Google Drive, Yandex Disk, Hugging Face) and credential redaction. Imports only `fomm_doctor.errors`.
"""
