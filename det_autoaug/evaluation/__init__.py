"""Evaluation harnesses: measurements of whether a searcher finds what helps (planted harm)."""
