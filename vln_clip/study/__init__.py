"""Encoder pre-training (contrastive vs classification) and the cross-task encoder comparison."""
