"""Metrics, submission validation and exporters, to the letter of the official evaluators (the baseline agents are in :mod:`vln_clip.agents.baselines`)."""
