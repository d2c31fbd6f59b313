"""``vln-clip pretrain`` and ``vln-clip finetune``: CLIP-ViL_p pre-training and fine-tuning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vln_clip.errors import DataError

from .common import add_encoder_argument, add_parser

PRESET_HELP = ("paper: the appendix recipe (BERT-base, 384/640 images, batch 512); cpu: a 2-layer 128-wide "
               "transformer, 128/192 images, batch 16 (minutes on 2 cores)")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _model_args(p: argparse.ArgumentParser, scratch_note: str = "") -> None:
    g = p.add_argument_group("model" + scratch_note)
    add_encoder_argument(g, help="CLIP visual tower: registry name (default clip_res50) or a backbone trained by "
                                 "the encoder study (ENC.pt of `vln-clip encoders pretrain`); "
                                 "--encoder-checkpoint is the same option")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--weights", help="checkpoint file or open_clip tag (default: the encoder's cached weights)")
    w.add_argument("--random-weights", action="store_true", help="untrained backbone, on purpose (recorded)")
    g.add_argument("--backbone-width", type=int, help="scaled-down CLIP ResNet: stem width (RN50: 64); random weights")
    g.add_argument("--backbone-layers", type=_int_tuple, help="scaled-down CLIP ResNet: blocks per stage, e.g. 1,1,1,1")
    g.add_argument("--transformer", choices=("base", "small", "tiny"), help="transformer size preset")
    g.add_argument("--hidden", type=int, help="override the preset's hidden size")
    g.add_argument("--layers", type=int, help="override the preset's number of layers")
    g.add_argument("--heads", type=int, help="override the preset's attention heads")
    g.add_argument("--weight-init", choices=("bert", "fan_in"),
                   help="transformer init: bert (std 0.02; preset base) or fan_in (1/sqrt(fan_in); small, tiny)")
    g.add_argument("--vocab", help="WordPiece vocab.txt (default: train one on the training text)")
    g.add_argument("--vocab-size", type=int, help="size of a trained WordPiece vocabulary")
    g.add_argument("--text-init", help="local Hugging Face BERT folder/file to initialise the transformer from")
    g.add_argument("--short-side", type=int, help="resize the shorter image side to this (paper 384)")
    g.add_argument("--long-side", type=int, help="cap the longer image side (paper 640)")
    g.add_argument("--max-text-len", type=int, help="word pieces per sentence incl. [CLS]/[SEP] (default 20)")


def _loop_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", required=out_required, type=Path, help="run folder (checkpoints, tb/, vocab.txt, results)")
    g.add_argument("--preset", choices=("paper", "cpu"), default="paper", help=PRESET_HELP)
    g.add_argument("--batch-size", type=int, help="global batch (all torchrun ranks together)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--backbone-lr", type=float, help="SGD learning rate of the backbone")
    g.add_argument("--transformer-lr", type=float, help="AdamW peak learning rate of the transformer")
    g.add_argument("--backbone-decay-epochs", type=_int_tuple, help="epochs after which the backbone lr drops x0.1")
    g.add_argument("--freeze-backbone", action="store_true", help="no gradient reaches the backbone (Table 8)")
    g.add_argument("--unfreeze-backbone-epoch", type=int,
                   help="the backbone's learning rate is 0 before this (0-based) epoch, so the new layers above "
                        "it train first (default 0: from the start)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="cpu or cuda (torchrun: one GPU per rank)")
    g.add_argument("--eval-every", type=int, default=0, help="updates between evaluations (0: at the end)")
    g.add_argument("--log-every", type=int, default=20)
    g.add_argument("--save-every", type=int, default=200)
    g.add_argument("--resume", action="store_true", help="continue OUT/last.pt bit for bit")
    g.add_argument("--progress", choices=("auto", "bar", "plain", "off"), default="auto")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--cache-images", action="store_true", help="keep resized images in memory")
    g.add_argument("--max-train-examples", type=int, help="train on a seeded random subset of this size (CPU budgets)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Registers ``pretrain`` and ``finetune``."""
    p = add_parser(sub, "pretrain", "CLIP-ViL_p pre-training (MLM + ITM + QA) with a trainable CLIP backbone",
                   ["vln-clip pretrain --data data/synth_vl --encoder clip_res50 --random-weights --out runs/pre",
                    "vln-clip pretrain --data data/synth_vl --encoder clip_res50 --backbone-width 16 "
                    "--backbone-layers 1,1,1,1 --preset cpu --out runs/pre_cpu",
                    "vln-clip pretrain --data lxmert/ --encoder clip_res50x4 --text-init bert-base-uncased/ "
                    "--vocab bert-base-uncased/vocab.txt --out runs/pre --device cuda",
                    "vln-clip pretrain --data data/synth_vl --init runs/pre_captions/best.pt --objectives qa "
                    "--qa-from-epoch 0 --out runs/pre_then_qa",
                    "torchrun --nproc-per-node 8 -m vln_clip.cli.main pretrain --data lxmert/ --encoder clip_res50 "
                    "--out runs/pre --device cuda"],
                   description="Pre-train the single-stream transformer and the CLIP backbone on the LXMERT-layout "
                               "mix in DIR/lxmert (captions + QA labels; DIR/images/<image key>.jpg): masked "
                               "words (15%), image-text matching (p=0.5 mismatches), and answer classification "
                               "from --qa-from-epoch on. Resumable (--resume), TensorBoard per objective in "
                               "OUT/tb, DDP under torchrun. Writes OUT/best.pt for vln-clip finetune.")
    p.add_argument("--data", required=True, type=Path, help="folder with lxmert/mscoco_{train,val}.json and images/")
    p.add_argument("--init", help="continue from a pre-training checkpoint (RUN/best.pt): a second phase with "
                                  "other data or --objectives; the checkpoint brings model, vocabulary and "
                                  "weights, the optimizers start fresh")
    _model_args(p, " (without --init; a checkpoint brings its own)")
    _loop_args(p)
    g = p.add_argument_group("objectives")
    g.add_argument("--qa-from-epoch", type=int, help="0-based epoch from which the QA loss is added (paper: 9 of 20)")
    g.add_argument("--patches", type=int, help="grid cells sampled per image (paper 100)")
    g.add_argument("--objectives", help="comma-separated subset of mlm,itm,qa to train (default all; ablations). "
                                        "A left-out objective is not applied to the input either")
    g.add_argument("--lm-sources", help="comma-separated sentence sources (sentf keys, e.g. mscoco,vg) that "
                                        "MLM and ITM read (default all); the other sentences (questions) feed QA "
                                        "only: not masked, never mismatched")
    g.add_argument("--eval-examples", type=int, help="held-out examples scored at each evaluation")
    p.set_defaults(func=_pretrain)

    f = add_parser(sub, "finetune", "fine-tune CLIP-ViL_p on VQA, SNLI-VE or GQA (or compare two fine-tuned runs)",
                   ["vln-clip finetune --task vqa --from runs/pre/best.pt --data data/synth_vl --out runs/ft_vqa",
                    "vln-clip finetune --task gqa --from scratch --data data/synth_vl --encoder clip_res50 "
                    "--random-weights --vocab runs/pre/vocab.txt --out runs/ft_gqa_scratch",
                    "vln-clip finetune --compare runs/ft_vqa runs/ft_vqa_scratch --split val",
                    "vln-clip finetune --compare runs/ft_gqa runs/ft_gqa_scratch --by-type detailed"],
                   description="Train a classifier on the pooled output over all grid cells: VQA (BCE on soft "
                               "scores, official VQA accuracy), SNLI-VE (3-way accuracy), GQA (accuracy; "
                               "OUT/<split>_predictions.json in the submission format). Every evaluation split "
                               "gets OUT/<split>_scores.json (per question) for paired comparisons (--compare).")
    f.add_argument("--task", choices=("vqa", "snli-ve", "gqa"))
    f.add_argument("--from", dest="init", default=None, help="pre-training checkpoint (RUN/best.pt) or 'scratch'")
    f.add_argument("--data", type=Path, help="folder in the synthetic V&L layout (vqa/, gqa/, snli_ve/, images/)")
    f.add_argument("--eval-splits", default="val", help="comma-separated evaluation splits (first = model selection)")
    f.add_argument("--min-answer-count", type=int, default=1, help="answers kept in the label space (VQA/GQA)")
    f.add_argument("--load-qa-head", action="store_true",
                   help="VQA/GQA from a checkpoint: start the answer head from the pre-training QA head (the "
                        "rows of shared answers; LXMERT's --loadLXMERTQA)")
    f.add_argument("--compare", nargs="+", type=Path, metavar="RUN",
                   help="no training: paired bootstrap comparison RUN_A RUN_B of two fine-tuned runs; more pairs "
                        "(A1 B1 A2 B2 ..., e.g. one per seed) are pooled over (pair, question)")
    f.add_argument("--split", default="val", help="with --compare: the split to compare")
    f.add_argument("--resamples", type=int, default=10000, help="with --compare: bootstrap resamples")
    f.add_argument("--by-type", nargs="?", const="", metavar="FIELD",
                   help="with --compare: also compare within each question type, read from the runs' --data: "
                        "VQA answer_type (default) or question_type, GQA structural (default), semantic or "
                        "detailed, SNLI-VE gold_label (default) or hypothesis_type (synthetic worlds); colour "
                        "(any task): items that name a colour or not; FIELD,FIELD crosses two "
                        "(hypothesis_type,gold_label)")
    _model_args(f, " (for --from scratch; a checkpoint brings its own)")
    _loop_args(f, out_required=False)  # --compare needs no run folder
    f.set_defaults(func=_finetune)


def _setup(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from vln_clip.pretraining.backbone import BackboneConfig

    encoder, checkpoint = args.encoder or "clip_res50", None
    if encoder.endswith((".pt", ".pth")):  # --encoder(-checkpoint) ENC.pt: a backbone of the encoder study
        if args.weights is not None or args.random_weights:
            raise DataError(f"--encoder-checkpoint {encoder}: an encoder checkpoint carries its own weights; drop "
                            "--weights/--random-weights")
        encoder, checkpoint = BackboneConfig.encoder, encoder
    backbone = BackboneConfig(encoder=encoder, weights=args.weights, random_weights=args.random_weights,
                              encoder_checkpoint=checkpoint, width=args.backbone_width, layers=args.backbone_layers)
    model = dict(backbone=backbone, transformer=args.transformer, hidden=args.hidden, layers=args.layers,
                 heads=args.heads, weight_init=args.weight_init, vocab=args.vocab, vocab_size=args.vocab_size, text_init=args.text_init,
                 short_side=args.short_side, long_side=args.long_side, max_text_len=args.max_text_len,
                 cache_images=True if args.cache_images else None)
    return model, backbone


def _optim(args: argparse.Namespace, defaults: Any) -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {"backbone_decay_epochs": args.backbone_decay_epochs,
                           "unfreeze_backbone_epoch": args.unfreeze_backbone_epoch}
    if args.backbone_lr is not None:
        out["backbone_optim"] = dataclasses.replace(defaults.backbone_optim, lr=args.backbone_lr)
    if args.transformer_lr is not None:
        out["transformer_optim"] = dataclasses.replace(defaults.transformer_optim, lr=args.transformer_lr)
    return out


def _loop(args: argparse.Namespace) -> Any:
    import torch

    from vln_clip.train import LoopConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    return LoopConfig(out_dir=str(args.out), epochs=1, eval_every=args.eval_every, log_every=args.log_every,
                      save_every=args.save_every, seed=args.seed, device=args.device, resume=True if args.resume else None,
                      progress=args.progress)


def _is_main() -> bool:
    """Under torchrun only rank 0 prints the summary line."""
    from vln_clip.train.distributed import current

    return current().is_main


def _pretrain(args: argparse.Namespace) -> int:
    from vln_clip.pretraining.run import pretrain, pretrain_config

    model, _ = _setup(args)
    base = pretrain_config(args.preset, model=model)
    cfg = pretrain_config(args.preset, model=model, data=str(args.data), batch_size=args.batch_size,
                          epochs=args.epochs, qa_from_epoch=args.qa_from_epoch, patches=args.patches,
                          eval_examples=args.eval_examples, max_train_examples=args.max_train_examples,
                          freeze_backbone=args.freeze_backbone or None, init=args.init,
                          lm_sources=tuple(x for x in args.lm_sources.split(",") if x) if args.lm_sources else None,
                          objectives=tuple(o for o in args.objectives.split(",") if o) if args.objectives else None,
                          seed=args.seed, **_optim(args, base))
    result = pretrain(cfg, _loop(args))
    if _is_main():
        print(json.dumps({"out": str(args.out), "step": result.step, "metrics": result.metrics,
                          "best": str(result.best_checkpoint) if result.best_checkpoint else None,
                          "interrupted": result.interrupted}))
    return 130 if result.interrupted else 0


def _finetune(args: argparse.Namespace) -> int:
    if args.compare:
        from vln_clip.pretraining.compare import compare_by_type, compare_runs

        res = compare_runs(args.compare, args.split, args.resamples)
        runs = [str(r) for r in args.compare]
        names = {"a": runs[0], "b": runs[1]} if len(runs) == 2 else {"a": runs[0::2], "b": runs[1::2]}
        out = {**names, "split": args.split, **res.to_dict()}
        if args.by_type is not None:  # "" = the task's default type field
            groups = compare_by_type(args.compare, args.split, args.resamples, args.by_type or None)
            out["by_type"] = {t: r.to_dict() for t, r in groups.items()}
        print(json.dumps(out))
        return 0
    missing = [name for name, v in (("--task", args.task), ("--from", args.init), ("--data", args.data),
                                    ("--out", args.out)) if v is None]
    if missing:
        raise DataError(f"vln-clip finetune needs {', '.join(missing)} (or --compare RUN_A RUN_B)")
    from vln_clip.pretraining.run import finetune, finetune_config

    model, _ = _setup(args)
    base = finetune_config(args.task, args.preset, model=model)
    cfg = finetune_config(args.task, args.preset, model=model, data=str(args.data), init=args.init,
                          batch_size=args.batch_size, epochs=args.epochs,
                          eval_splits=tuple(s for s in args.eval_splits.split(",") if s),
                          min_answer_count=args.min_answer_count, max_train_examples=args.max_train_examples,
                          freeze_backbone=args.freeze_backbone or None, load_qa_head=args.load_qa_head or None,
                          seed=args.seed, **_optim(args, base))
    summary = finetune(cfg, _loop(args))
    if _is_main():
        print(json.dumps({k: summary[k] for k in ("task", "init", "step", "metrics", "predictions") if k in summary}))
    return 130 if summary.get("interrupted") else 0
