"""The task-agnostic training core shared by navigation, VQA, captioning and pre-training."""
