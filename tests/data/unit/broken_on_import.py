"""A user file that fails while it is imported."""

raise RuntimeError("this file fails on purpose")
