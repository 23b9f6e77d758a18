"""fomm-doctor: diagnose, install, fetch and run the First Order Motion Model."""
__version__ = "0.1.0"
