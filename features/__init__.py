"""Panoramic views, CLIP feature extraction and the feature store."""
