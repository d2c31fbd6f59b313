"""``vln-clip gradcam``: where an encoder looks when it matches an image with a text, and where a
trained VQA model looks when it answers a question."""

from __future__ import annotations

import argparse
import json

from vln_clip.errors import DataError

from .common import add_encoder_argument, add_parser, positive_int


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "gradcam", "Grad-CAM of image-text similarity (CLIP-ResNet last stage, ViT final-layer "
                   "tokens) or of a VQA model's answer score",
                   ["vln-clip gradcam --encoder-checkpoint enc/contrastive.pt --image img.jpg --text 'a red sofa' "
                    "--text 'a kitchen' --out cam.png",
                    "vln-clip gradcam --encoder clip_res50 --random-weights --image img.jpg --text 'a dog' --out cam.png",
                    "vln-clip gradcam --checkpoint runs/mcan/best.pt --image img.jpg --question 'what room is this?' "
                    "--out cam.png",
                    "vln-clip gradcam --checkpoint runs/mcan/best.pt --image img.jpg --question 'what color is the sofa?' "
                    "--answer red --answer blue --out cam.png"],
                   description="With --encoder/--encoder-checkpoint and --text: Grad-CAM of the cosine similarity "
                               "between the image and each text. With --checkpoint (a VQA model from `vln-clip vqa "
                               "train`) and --question: Grad-CAM of the logit of the model's top answer (or of each "
                               "--answer) over the grid cells; the grid is recomputed from --image with the encoder, "
                               "weights and resolution rule recorded in the model's feature store, so that encoder "
                               "must be on this machine.")
    who = p.add_mutually_exclusive_group(required=True)
    add_encoder_argument(who, help="registry CLIP encoder (clip_res50, clip_res101, clip_res50x4, clip_vit_b32) or "
                                   "ENC.pt from `vln-clip encoders pretrain --objective contrastive`; "
                                   "--encoder-checkpoint is the same option")
    who.add_argument("--checkpoint", help="a VQA model (RUN/best.pt of `vln-clip vqa train`, Pythia or MCAN)")
    wts = p.add_mutually_exclusive_group()
    wts.add_argument("--weights", help="checkpoint file or open_clip tag for --encoder")
    wts.add_argument("--random-weights", action="store_true", help="untrained weights (recorded as such)")
    p.add_argument("--image", required=True)
    p.add_argument("--text", action="append", help="image-text mode: a text to explain (repeat for several)")
    p.add_argument("--question", help="--checkpoint mode: the question to ask about --image")
    p.add_argument("--answer", action="append", help="--checkpoint mode: explain this answer's score instead of the "
                   "top answer's (repeat for several)")
    p.add_argument("--short-side", type=positive_int, default=None, help="image-text mode: resize the image's shorter "
                   "side (default: the encoder's input size); a VQA model uses its store's resolution rule")
    p.add_argument("--device", default="cpu", help="--checkpoint mode: cpu, cuda, ...")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=_gradcam)


def _gradcam(args: argparse.Namespace) -> int:
    from vln_clip.study.gradcam import explain_image_text, explain_vqa

    if args.checkpoint:
        wrong = [flag for flag, given in (("--text", args.text), ("--weights", args.weights),
                                          ("--random-weights", args.random_weights),
                                          ("--short-side", args.short_side)) if given]
        if wrong:
            raise DataError(f"{', '.join(wrong)}: not used with --checkpoint (a VQA model recomputes its grid with "
                            "the encoder, weights and resolution its feature store recorded); drop them")
        if not args.question:
            raise DataError("--checkpoint needs --question 'the question to ask about --image'")
        report = explain_vqa(args.checkpoint, args.image, args.question, args.out, answers=args.answer,
                             device=args.device)
        print(json.dumps(report))
        return 0
    if args.question or args.answer:
        raise DataError("--question/--answer explain a VQA model: pass it with --checkpoint RUN/best.pt (with "
                        "--encoder/--encoder-checkpoint, pass --text)")
    if not args.text:
        raise DataError("--encoder/--encoder-checkpoint need at least one --text to explain")
    scores = explain_image_text(args.encoder, args.image, args.text, args.out,
                                weights=args.weights, random_weights=args.random_weights, short_side=args.short_side)
    print(json.dumps({"out": args.out, "similarity": scores}))
    return 0
