"""CLIP-ViL_p: single-stream V&L pre-training with a trainable CLIP backbone, and fine-tuning."""
