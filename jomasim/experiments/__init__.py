"""Experiments: each module runs one study and returns its results as arrays and numbers."""
