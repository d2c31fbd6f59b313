"""``vln-clip gradcam``: where an encoder looks when it matches an image with a text."""

from __future__ import annotations

import argparse
import json

from .common import add_parser, positive_int


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "gradcam", "Grad-CAM of image-text similarity (CLIP-ResNet last stage, ViT final-layer tokens)",
                   ["vln-clip gradcam --encoder-checkpoint enc/contrastive.pt --image img.jpg --text 'a red sofa' "
                    "--text 'a kitchen' --out cam.png",
                    "vln-clip gradcam --encoder clip_res50 --random-weights --image img.jpg --text 'a dog' --out cam.png"])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--encoder", help="registry CLIP encoder (clip_res50, clip_res101, clip_res50x4, clip_vit_b32)")
    who.add_argument("--encoder-checkpoint", help="ENC.pt from `vln-clip encoders pretrain` (contrastive)")
    wts = p.add_mutually_exclusive_group()
    wts.add_argument("--weights", help="checkpoint file or open_clip tag for --encoder")
    wts.add_argument("--random-weights", action="store_true", help="untrained weights (recorded as such)")
    p.add_argument("--image", required=True)
    p.add_argument("--text", action="append", required=True, help="a text to explain (repeat for several)")
    p.add_argument("--short-side", type=positive_int, default=None, help="resize the image's shorter side (default: "
                   "the encoder's input size)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=_gradcam)


def _gradcam(args: argparse.Namespace) -> int:
    from vln_clip.study.gradcam import explain_image_text

    scores = explain_image_text(args.encoder or args.encoder_checkpoint, args.image, args.text, args.out,
                                weights=args.weights, random_weights=args.random_weights, short_side=args.short_side)
    print(json.dumps({"out": args.out, "similarity": scores}))
    return 0
