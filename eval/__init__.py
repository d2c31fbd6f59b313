"""Metrics, submission validation, exporters and baseline agents, to the letter of the official evaluators."""
