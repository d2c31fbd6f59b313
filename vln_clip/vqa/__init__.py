"""Visual question answering over grid features (Pythia, MCAN), baselines and zero-shot CLIP."""
