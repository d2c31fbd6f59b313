"""Decoding: greedy, sampling with temperature, beam search.

Works with any model that has ``encode(feats, mask, shapes) -> (memory, mem_pad)`` and
``next_logprobs(memory, mem_pad, prefix) -> [N, V]`` (see
:class:`~vln_clip.captioning.model.TransformerCaptioner`); decoders take the encoded
memory so that SCST encodes an image once for its 5 samples and its greedy baseline.

Outputs are ``[N, max_len + 1]`` long tensors of generated ids (no BOS): words, then EOS,
then PAD. Length handling, the same in all three:

* a caption ends at its first EOS (EOS is part of its log-probability);
* at most ``max_len`` words (16 in the recipe) are generated; a caption that reaches them
  gets EOS appended without it being scored (the cut is forced, as in training targets,
  which are cut to 16 words before their EOS);
* beam search ranks the live beams by their summed log-probabilities; finished beams stay
  in the beam with their score frozen (they can only be followed by PAD at no cost), and
  the answer is the best of the beams at the end by ``score / length ** length_norm``
  (length counting EOS). ``length_norm = 0`` (the default, as self-critical.pytorch's
  default) ranks by the raw sum, which favours shorter captions; ``1`` is the per-word mean.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .vocab import BOS, EOS, MAX_LEN, PAD


class Decodable(Protocol):
    def next_logprobs(self, memory: torch.Tensor, mem_pad: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor: ...


def allowed_logprobs(logits_or_logp: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the words a caption may contain: PAD and BOS are never generated
    (an untrained network gives them mass), renormalised over the rest. Decoding and SCST's
    re-scoring use this same distribution, so SCST's policy is the one that sampled."""
    x = logits_or_logp.float().clone()
    x[..., PAD] = float("-inf")
    x[..., BOS] = float("-inf")
    return torch.log_softmax(x, dim=-1)


def _repeat(memory: torch.Tensor, mem_pad: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return memory.repeat_interleave(n, 0), mem_pad.repeat_interleave(n, 0)


def _close(tokens: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Append a forced EOS to captions that hit the word limit without one."""
    last = torch.where(done, torch.full_like(tokens[:, 0], PAD), torch.full_like(tokens[:, 0], EOS))
    return torch.cat([tokens, last[:, None]], dim=1)


@torch.no_grad()
def greedy(model: Decodable, memory: torch.Tensor, mem_pad: torch.Tensor, max_len: int = MAX_LEN) -> torch.Tensor:
    """The most probable word at every step."""
    return _autoregress(model, memory, mem_pad, max_len, lambda logp: logp.argmax(-1))


@torch.no_grad()
def sample(model: Decodable, memory: torch.Tensor, mem_pad: torch.Tensor, n: int = 1, temperature: float = 1.0,
           max_len: int = MAX_LEN, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` captions per image (rows image-major: image 0's n samples first) drawn from
    ``softmax(log p / temperature)``; the global torch RNG unless ``generator`` is given."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy for the limit)")
    memory, mem_pad = _repeat(memory, mem_pad, n)

    def draw(logp: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logp / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _autoregress(model, memory, mem_pad, max_len, draw)


def _autoregress(model: Decodable, memory: torch.Tensor, mem_pad: torch.Tensor, max_len: int, choose) -> torch.Tensor:
    n = memory.shape[0]
    prefix = torch.full((n, 1), BOS, dtype=torch.long, device=memory.device)
    done = torch.zeros(n, dtype=torch.bool, device=memory.device)
    for _ in range(max_len):
        word = choose(allowed_logprobs(model.next_logprobs(memory, mem_pad, prefix)))
        word = torch.where(done, torch.full_like(word, PAD), word)
        prefix = torch.cat([prefix, word[:, None]], dim=1)
        done |= word == EOS
        if bool(done.all()):
            break
    tokens = prefix[:, 1:]
    if tokens.shape[1] < max_len:
        tokens = torch.cat([tokens, tokens.new_full((n, max_len - tokens.shape[1]), PAD)], dim=1)
    return _close(tokens, done)


@torch.no_grad()
def beam_search(model: Decodable, memory: torch.Tensor, mem_pad: torch.Tensor, beam: int = 5,
                max_len: int = MAX_LEN, length_norm: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best caption per image under beam search, and its (length-normalised) log-probability."""
    if beam < 1:
        raise ValueError("beam must be >= 1")
    b = memory.shape[0]
    dev = memory.device
    memory, mem_pad = _repeat(memory, mem_pad, beam)
    prefix = torch.full((b * beam, 1), BOS, dtype=torch.long, device=dev)
    score = torch.full((b, beam), float("-inf"), device=dev)
    score[:, 0] = 0.0  # all beams start identical: keep one live so the first step does not repeat it
    done = torch.zeros(b * beam, dtype=torch.bool, device=dev)
    length = torch.zeros(b * beam, device=dev)
    for _ in range(max_len):
        logp = allowed_logprobs(model.next_logprobs(memory, mem_pad, prefix))
        v = logp.shape[1]
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, PAD] = 0.0
        logp = torch.where(done[:, None], frozen, logp)
        total = (score.reshape(-1, 1) + logp).reshape(b, beam * v)
        score, flat = total.topk(beam, dim=1)
        src = (flat // v + torch.arange(b, device=dev)[:, None] * beam).reshape(-1)
        word = (flat % v).reshape(-1)
        prefix = torch.cat([prefix[src], word[:, None]], dim=1)
        was_done = done[src]
        length = length[src] + (~was_done).float()
        done = was_done | (word == EOS)
        if bool(done.all()):
            break
    tokens = prefix[:, 1:]
    if tokens.shape[1] < max_len:
        tokens = torch.cat([tokens, tokens.new_full((b * beam, max_len - tokens.shape[1]), PAD)], dim=1)
    tokens = _close(tokens, done)
    ranked = score.reshape(-1) / length.clamp(min=1) ** length_norm if length_norm else score.reshape(-1)
    best = ranked.reshape(b, beam).argmax(dim=1)
    rows = torch.arange(b, device=dev) * beam + best
    return tokens[rows], ranked.reshape(b, beam)[torch.arange(b, device=dev), best]


def sequence_logprobs(model, memory: torch.Tensor, mem_pad: torch.Tensor, tokens: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities ``[N, T]`` of decoded ``tokens`` ``[N, max_len + 1]``
    (teacher forced, with gradients) and the mask of the tokens that count: words up to and
    including a chosen EOS; the last column only ever holds the forced EOS, which was never
    chosen, so it does not count."""
    n = tokens.shape[0]
    inp = torch.cat([tokens.new_full((n, 1), BOS), tokens[:, :-1]], dim=1)
    logits = model.decode(memory, mem_pad, inp)
    logp = allowed_logprobs(logits).gather(2, tokens[:, :, None]).squeeze(2)
    mask = tokens != PAD
    mask[:, -1] = False
    return torch.where(mask, logp, torch.zeros_like(logp)), mask
