"""Readers and writers of the image-text datasets in their real formats.

One module per format, each with ``read_*`` (validating: a bad file raises
:class:`vln_clip.errors.DataError` naming the file, the entry, the field and the fix) and an
atomic ``write_*``; every item read carries ``image_key``, the image's file stem, which is also
its key in a feature store:

* :mod:`.vqa` -- VQA v2 questions + annotations, :class:`~.vqa.AnswerVocab` and soft scores;
* :mod:`.coco` -- COCO Captions and the Karpathy split file ``dataset_coco.json``;
* :mod:`.gqa` -- GQA balanced questions;
* :mod:`.snli_ve` -- SNLI-VE JSON lines;
* :mod:`.lxmert` -- the LXMERT pre-training mix;
* :mod:`.results` -- result / submission files (VQA EvalAI, COCO captions, GQA).
"""
