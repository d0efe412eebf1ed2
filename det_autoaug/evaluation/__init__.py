"""Experiments: whether a searcher finds what helps (planted harm) and whether a searched policy beats the
baselines (the classification and detection comparisons: arms, config edits, runs, reports)."""
