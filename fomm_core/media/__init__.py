"""Pixels in and out: video through ffmpeg (probe, read, write with audio), images (Unicode paths, alpha,
pixel limit), face detection and tracking, and face crops. No torch at import time.
"""
