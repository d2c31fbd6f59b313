"""Readers and writers of the image-text datasets in their real formats (VQA v2, COCO Captions,
Karpathy splits, GQA, SNLI-VE, the LXMERT pre-training mix)."""
