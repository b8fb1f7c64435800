"""Gradient verification of every framework module (see verification.check)."""
