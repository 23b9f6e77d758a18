"""Kept so that `from fomm_core.engine import Animator` (the 0.1 import path) keeps working."""
from fomm_core.inference.engine import Animator

__all__ = ["Animator"]
