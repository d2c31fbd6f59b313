"""``vln-clip vqa``: train, evaluate, predict and zero-shot VQA."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_encoder_argument, add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "vqa", "visual question answering over grid features",
                   ["vln-clip vqa train --data data/vl --features grid.h5 --model mcan --preset small --out runs/mcan",
                    "vln-clip vqa eval --questions Q.json --annotations A.json --preds P.json --json",
                    "vln-clip vqa predict --checkpoint runs/mcan/best.pt --features grid.h5 --questions Q.json "
                    "--out P.json",
                    "vln-clip vqa zero-shot --encoder clip_res50 --random-weights --questions Q.json "
                    "--annotations A.json --images data/vl/images"])
    vsub = p.add_subparsers(dest="vqa_command", metavar="VQA_COMMAND")
    p.set_defaults(func=lambda a: p.print_help() or 1)

    t = add_parser(vsub, "train", "train Pythia or MCAN on grid features (or a baseline)",
                   ["vln-clip vqa train --data data/vl --features grid.h5 --model mcan --preset small --out runs/mcan",
                    "vln-clip vqa train --data data/vl --features grid.h5 --model pythia --preset tiny --epochs 20 "
                    "--batch-size 64 --out runs/pythia_tiny",
                    "vln-clip vqa train --data data/vl --model mcan --preset tiny --question-only --out runs/qonly",
                    "vln-clip vqa train --data data/vl --model prior --out runs/prior",
                    "vln-clip vqa train --out runs/mcan --resume"],
                   description="Binary cross-entropy on VQA soft scores; defaults are the public recipes "
                               "(MCAN: openvqa mcan_small/large; Pythia: MMF's VQA v2 config), see docs/vqa.md. "
                               "Writes OUT/last.pt, OUT/best.pt (best val/accuracy), OUT/tb, OUT/curves.png. "
                               "--resume continues OUT/last.pt bit for bit with the checkpoint's settings.")
    t.add_argument("--data", help="folder with vqa/v2_OpenEnded_mscoco_<split>_questions.json (synthetic world or "
                                  "the official VQA v2 files)")
    t.add_argument("--features", help="grid feature store (.h5) from `vln-clip features grid`")
    t.add_argument("--model", choices=("pythia", "mcan", "prior"), default="mcan")
    t.add_argument("--preset", help="model size: pythia base|small|tiny, mcan large|small|tiny "
                                    "(default base / small)")
    t.add_argument("--question-only", action="store_true", help="the same model without the image (baseline)")
    t.add_argument("--out", required=True, help="run folder")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the training questions (default: the recipe's)")
    length.add_argument("--iters", type=int, help="updates (default: the recipe's)")
    t.add_argument("--batch-size", type=int, help="default: the recipe's (MCAN 64, Pythia 512)")
    t.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    t.add_argument("--grad-clip", type=float, help="clip the gradient L2 norm (default: the recipe's)")
    t.add_argument("--dropout", type=float, help="override the preset's dropout")
    t.add_argument("--answer-min-count", type=int, default=9,
                   help="keep answers that are the consensus of >= N training questions (default 9, as BUTD)")
    t.add_argument("--soft-score", choices=("mmf", "butd"), default="mmf")
    t.add_argument("--feature-norm", choices=("none", "standardize"), default="none",
                   help="standardize: per-channel mean/std of the training cells (for features of unusual "
                        "scale, e.g. random-weight encoders); stored in the checkpoint")
    t.add_argument("--word-vectors", help="GloVe text file (e.g. glove.6B.300d.txt) to initialise the word "
                                          "embeddings (default: learned from scratch)")
    t.add_argument("--embed-dim", type=int, help="word embedding size (must match --word-vectors)")
    t.add_argument("--train-split", default="train", help="split name in the file names (train, train2014)")
    t.add_argument("--val-split", default="val", help="split name in the file names (val, val2014)")
    t.add_argument("--max-train", type=int, help="use only the first N training questions")
    t.add_argument("--max-val", type=int, help="use only the first N validation questions")
    t.add_argument("--eval-every", type=int, default=0, help="updates between evaluations (0 = once per epoch)")
    t.add_argument("--save-every", type=int, default=0, help="updates between checkpoints (0 = with evaluation)")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    t.add_argument("--progress", choices=("auto", "bar", "plain", "off"), default="auto")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=_train)

    e = add_parser(vsub, "eval", "the official VQA accuracy of a result file",
                   ["vln-clip vqa eval --questions v2_OpenEnded_mscoco_val2014_questions.json "
                    "--annotations v2_mscoco_val2014_annotations.json --preds P.json --json"],
                   description="GT-Vision-Lab/VQA vqaEval.py rules (normalisation quirks included), percentages "
                               "overall, per answer type and per question type, unrounded in --json.")
    e.add_argument("--questions", required=True)
    e.add_argument("--annotations", required=True)
    e.add_argument("--preds", required=True, help='[{"question_id": int, "answer": str}, ...]')
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_eval)

    pr = add_parser(vsub, "predict", "answer a question file with a checkpoint (EvalAI submission), or --check one",
                    ["vln-clip vqa predict --checkpoint runs/mcan/best.pt --features grid.h5 --questions Q.json "
                     "--out P.json",
                     "vln-clip vqa predict --checkpoint runs/mcan/best.pt --features grid.h5 --questions Q.json "
                     "--out P.json --attention-png att/ --images data/vl/images",
                     "vln-clip vqa predict --check P.json --questions Q.json"])
    pr.add_argument("--checkpoint", help="RUN/best.pt of `vln-clip vqa train`")
    pr.add_argument("--features", help="grid feature store made with the checkpoint's encoder and weights")
    pr.add_argument("--questions", required=True, help="VQA question file")
    pr.add_argument("--out", help="submission file to write")
    pr.add_argument("--check", metavar="P.json", help="only validate this submission against --questions")
    pr.add_argument("--attention-png", metavar="DIR", help="write the model's attention over the grid as PNGs")
    pr.add_argument("--attention-count", type=int, default=8, help="questions to draw (default 8)")
    pr.add_argument("--images", help="image folder, to draw the attention over the pictures")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--device", default="cpu")
    pr.set_defaults(func=_predict)

    z = add_parser(vsub, "zero-shot", "zero-shot CLIP VQA: best candidate answer by image-text similarity",
                   ["vln-clip vqa zero-shot --encoder clip_res50 --questions Q.json --annotations A.json "
                    "--images DIR",
                    "vln-clip vqa zero-shot --encoder clip_vit_b32 --random-weights --questions Q.json "
                    "--annotations A.json --images DIR --prompt 'question: {question} answer: {answer}' --json"],
                   description="Scores every (question + candidate answer) text against the image with the CLIP "
                               "text and image towers (the paper's Table 7), without and with --prompt.")
    add_encoder_argument(z, default="clip_res50",
                         help="CLIP registry name (default clip_res50; see `vln-clip features encoders`) or an "
                              "encoder checkpoint ENC.pt trained with --objective contrastive; "
                              "--encoder-checkpoint is the same option")
    w = z.add_mutually_exclusive_group()
    w.add_argument("--weights", help="checkpoint file or open_clip tag (default: the encoder's default tag)")
    w.add_argument("--random-weights", action="store_true", help="untrained CLIP, on purpose (recorded)")
    z.add_argument("--questions", required=True)
    z.add_argument("--annotations", required=True)
    z.add_argument("--images", required=True, help="folder of the images (file stem = image key)")
    z.add_argument("--answer-vocab", help="candidate answers (vln-clip vocabulary JSON or one answer per line); "
                                          "default: the answers of --annotations")
    z.add_argument("--prompt", default="question: {question} answer: {answer}")
    z.add_argument("--max-questions", type=int)
    z.add_argument("--device", default="cpu")
    z.add_argument("--json", action="store_true")
    z.set_defaults(func=_zero_shot)


def _train(args: argparse.Namespace) -> int:
    import torch

    from vln_clip.errors import DataError
    from vln_clip.train import LoopConfig, load_checkpoint
    from vln_clip.vqa.training import VQATrainConfig, default_length, train_prior, train_vqa

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        ckpt = load_checkpoint(Path(args.out) / "last.pt", kind="vqa")
        cfg = VQATrainConfig.from_dict(ckpt["config"])
        loop = LoopConfig.from_dict({**ckpt["loop"], "out_dir": args.out, "resume": True,
                                     "progress": args.progress})
        if args.epochs is not None or args.iters is not None:
            loop.epochs, loop.iters = args.epochs, args.iters
    else:
        if not args.data:
            raise DataError("--data DIR is required (the folder with the VQA question/annotation files)")
        cfg = VQATrainConfig(
            data=args.data, features=args.features, model=args.model, preset=args.preset,
            question_only=args.question_only, train_split=args.train_split, val_split=args.val_split,
            answer_min_count=args.answer_min_count, soft_score=args.soft_score, word_vectors=args.word_vectors,
            embed_dim=args.embed_dim, dropout=args.dropout, batch_size=args.batch_size, lr=args.lr,
            grad_clip=args.grad_clip, feature_norm=args.feature_norm, max_train=args.max_train,
            max_val=args.max_val)
        cfg.validate()
        if cfg.model == "prior":
            res = train_prior(cfg, args.out)
            return _print_summary(args, {"model": "prior", "best_checkpoint": str(res.checkpoint),
                                         "metrics": res.metrics, "seconds": res.seconds})
        length = ({"epochs": args.epochs} if args.epochs is not None else
                  {"iters": args.iters} if args.iters is not None else default_length(cfg))
        loop = LoopConfig(out_dir=args.out, eval_every=args.eval_every, save_every=args.save_every,
                          log_every=args.log_every, seed=args.seed, device=args.device, progress=args.progress,
                          best_metric="val/accuracy", best_mode="max", report_keys=(
                              "loss", "val/accuracy", "val/accuracy_yes_no", "val/accuracy_number",
                              "val/accuracy_other"), **length)
    res = train_vqa(cfg, loop)
    return _print_summary(args, {"model": cfg.model, "question_only": cfg.question_only, "step": res.step,
                                 "best_checkpoint": str(res.best_checkpoint) if res.best_checkpoint else None,
                                 "last_checkpoint": str(res.last_checkpoint), "best_score": res.best_score,
                                 "metrics": res.metrics, "interrupted": res.interrupted},
                          130 if res.interrupted else 0)


def _print_summary(args: argparse.Namespace, summary: dict, rc: int = 0) -> int:
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            if k == "metrics":
                print("  ".join(f"{m}={x:.2f}" for m, x in v.items()))
            else:
                print(f"{k}: {v}")
    return rc


def _eval(args: argparse.Namespace) -> int:
    from vln_clip.eval.vqa_accuracy import evaluate_vqa

    report = evaluate_vqa(args.questions, args.annotations, args.preds)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"Overall Accuracy is: {report['overall']:.2f}")
    print("Per Answer Type Accuracy is the following:")
    for t, v in report["per_answer_type"].items():
        print(f"{t} : {v:.2f}" if v is not None else f"{t} : -")
    print("Per Question Type Accuracy is the following:")
    for t, v in report["per_question_type"].items():
        print(f"{t} : {v:.2f}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vln_clip.errors import DataError
    from vln_clip.vqa.predict import PredictConfig, check_submission, predict_vqa

    if args.check:
        n = check_submission(args.check, args.questions)
        print(f"{args.check}: valid submission, {n} answers, one per question of {args.questions}")
        return 0
    if not args.checkpoint or not args.out:
        raise DataError("predict needs --checkpoint RUN/best.pt and --out P.json (or --check P.json)")
    report = predict_vqa(PredictConfig(args.checkpoint, args.questions, args.out, args.features, args.attention_png,
                                       args.attention_count, args.images, args.batch_size, args.device))
    print(f"wrote {report['out']}: {report['n_questions']} answers ({report['model']}, "
          f"{report['seconds']:.1f} s)", file=sys.stderr)
    return 0


def _zero_shot(args: argparse.Namespace) -> int:
    from vln_clip.vqa.zero_shot import ZeroShotConfig, run_zero_shot

    cfg = ZeroShotConfig(args.questions, args.annotations, args.images, args.encoder, args.weights,
                         args.random_weights, args.answer_vocab, args.prompt, args.max_questions, device=args.device)

    def progress(i: int, n: int) -> None:
        if i == n or i % 200 == 0:
            print(f"zero-shot: {i}/{n} questions", file=sys.stderr, flush=True)

    report = run_zero_shot(cfg, progress=progress)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"encoder {report['encoder']} (weights {report['weights']}), {report['n_questions']} questions, "
          f"{report['n_candidates']} candidate answers")
    for name in ("no_prompt", "prompt"):
        r = report[name]
        types = "  ".join(f"{t}={v:.2f}" for t, v in r["per_answer_type"].items() if v is not None)
        print(f"{name:9s} overall={r['overall']:.2f}  {types}")
    return 0
