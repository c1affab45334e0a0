"""The public entry points: `generate` (whole result) and `stream` (chunks as they are committed).

This file checks the inputs, turns the prompt into token ids, runs the decode loop and turns
committed tokens into text, honouring stop strings. For an encoder–decoder pair the prompt is
the source: each model is bound to it (models/source_bound.py) and the decoder starts from the
model's start ids, so the loop and the policies run unchanged.
"""
from __future__ import annotations

import inspect
import time
from typing import Iterator, Sequence

from .decoding.result import Chunk, GenerationResult, Stats, TokenLogprob
from .decoding.sampling import Sampler
from .decoding.text import TextTracker
from .decoding.vocab_bridge import VocabBridge
from .errors import ConfigError, PromptError, VocabMismatchError
from .models.source_bound import bind_source, check_kinds
from .policies.base import Policy
from .policies.token import BiLD
from .tokens import same_tokenizer


def generate(small, big, prompt, policy: Policy | None = None, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, stop: str | Sequence[str] | None = None,
             chat: bool = False, allow_topk_sampling: bool = False,
             logprobs: int | None = None) -> GenerationResult:
    """Generate up to `max_new_tokens` tokens after `prompt` with a small and a big model.

    prompt: a string (tokenized with the big model's tokenizer; chat=True applies its chat
    template, and a list of {"role", "content"} messages is also accepted then) or a list of
    token ids. small may be None for BigOnly, big may be None for SmallOnly.
    Encoder–decoder models (T5, Marian, ...: `hf-seq2seq:` or `hf:`): the prompt is the source
    (text or token ids), which each model encodes with its own encoder; the new tokens are the
    decoder's. Chat does not apply; stats.prompt_tokens and result.prompt_ids are the source's.
    seed: None (the default) draws fresh randomness for every call, without touching torch's
    global RNG; an integer makes sampled output reproducible.
    allow_topk_sampling: let a big model that reports only top-k log-probs (a remote server) be
    sampled from its renormalised top-k; without it such a model is greedy-only.
    logprobs: None (the default) computes none; an integer n ≥ 0 fills result.logprobs (and each
    Chunk's) with one decoding.result.TokenLogprob per returned token: its raw log-prob (temperature
    1) and the n most likely alternatives, under the model whose decision kept it ("big" where the
    big model verified or wrote it, "small" where the small model's token went unchecked; contrastive
    decoding reports the big model's, a cascade or router the model that wrote the answer).
    """
    final = None
    for chunk in stream(small, big, prompt, policy=policy, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop, chat=chat,
                        allow_topk_sampling=allow_topk_sampling, logprobs=logprobs):
        final = chunk.final
    assert final is not None
    return final


def stream(small, big, prompt, policy: Policy | None = None, max_new_tokens: int = 64,
           temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, stop: str | Sequence[str] | None = None,
           chat: bool = False, allow_topk_sampling: bool = False,
           logprobs: int | None = None) -> Iterator[Chunk]:
    """Like `generate`, but yields a Chunk each time tokens are committed (never tokens that a
    later rollback could take back). The last chunk carries the whole result in `.final`.
    Closing the iterator early stops the generation."""
    policy = BiLD() if policy is None else policy
    sampler = Sampler(temperature, top_k, top_p, seed)  # validates the sampling settings
    check_logprobs(logprobs)
    if logprobs is not None and not _takes(policy.run, "logprobs"):
        raise ConfigError(f"policy {policy.name!r} does not report log-probs; drop logprobs=")
    shared = check_pair(small, big, policy.uses_small, policy.uses_big, f"policy {policy.name!r}")
    if not sampler.greedy and policy.uses_big and not getattr(big, "full_distribution", True) \
            and not allow_topk_sampling:
        raise ConfigError(f"{big.spec} reports only the top-k of each distribution, so sampling from it would "
                          "not be exact; use temperature=0, or pass allow_topk_sampling=True to sample from "
                          "the renormalised top-k (an approximation)")
    lead = big if policy.uses_big else small
    source_ids = encode_source(lead, prompt, chat) if getattr(lead, "encoder_decoder", False) else None
    if source_ids is not None:  # the loop sees decoder-only models whose prompt is the decoder's start
        small, big = bind_source(small, source_ids), bind_source(big, source_ids)
        prompt_ids = list(lead.decoder_start_ids)
    else:
        prompt_ids = encode_prompt(lead, prompt, chat)
    check_budget(prompt_ids, max_new_tokens, [m for m in (small, big) if m is not None], lead.vocab_size)
    bridge = None if shared else vocab_bridge(small, big, policy, sampler, prompt, chat, prompt_ids)
    stops = _stop_list(stop, lead)
    return _committed_chunks(small, big, lead, prompt_ids, policy, sampler, max_new_tokens, stops, source_ids, bridge,
                             logprobs)


def _committed_chunks(small, big, lead, prompt_ids, policy, sampler, max_new_tokens, stops,
                      source_ids=None, bridge: VocabBridge | None = None,
                      logprobs: int | None = None) -> Iterator[Chunk]:
    """Run the policy; turn each commit into a Chunk (text, stop strings); the last one carries the result."""
    given = prompt_ids if source_ids is None else source_ids  # what the caller gave: the source, if any
    stats = Stats(policy=policy.describe(), prompt_tokens=len(given))
    text = TextTracker(lead.tokenizer, stops)
    token_ids: list[int] = []
    origins: list[str] = []
    reasons: list[str] = []
    lps: list[TokenLogprob] | None = None if logprobs is None else []
    t0 = time.perf_counter()
    # optional arguments only when used, so a policy written before them still runs
    optional = {**({"bridge": bridge} if bridge else {}), **({"logprobs": logprobs} if logprobs is not None else {})}
    steps = policy.run(small, big, prompt_ids, sampler, max_new_tokens, stats, **optional)
    for step in steps:
        new, who, why = step[0], step[1], step[2]
        got = step[3] if len(step) > 3 else None
        if lps is not None and (got is None or len(got) != len(new)):
            raise ConfigError(f"policy {policy.name!r} does not report log-probs; drop logprobs=")
        keep, delta = text.add(new)
        token_ids += new[:keep]
        origins += who[:keep]
        reasons += why[:keep]
        if lps is not None:
            lps += got[:keep]  # a stop-string cut drops the log-probs of the tokens it drops
        if text.stopped:  # a stop string ended the text: stop the loop, this becomes the last chunk
            steps.close()
            stats.finish_reason = "stop"
            last = Chunk(new[:keep], who[:keep], delta, reasons=why[:keep],
                         logprobs=None if lps is None else got[:keep])
            break
        yield Chunk(new, who, delta, reasons=why, logprobs=None if lps is None else got)
    else:
        last = Chunk([], [], text.flush(), reasons=[], logprobs=None if lps is None else [])
    stats.wall_s = time.perf_counter() - t0
    stats.count_output(origins)  # output counters: the returned tokens only (see Stats)
    last.final = GenerationResult(token_ids, origins, stats, text.text if lead.tokenizer else None,
                                  list(given), reasons, lps)
    yield last


# ---------------------------------------------------------------- input checks

def check_logprobs(logprobs) -> None:
    """None, or an integer ≥ 0 (how many top alternatives each token's log-prob comes with)."""
    if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool) or logprobs < 0):
        raise ConfigError(f"logprobs must be None (none) or an integer ≥ 0 (the number of top alternatives "
                          f"per token), got {logprobs!r}")


def check_pair(small, big, needs_small: bool = True, needs_big: bool = True, who: str = "this policy") -> bool:
    """The models `who` needs are there. Returns whether they share one tokenizer (True when it
    needs only one model); two vocabularies with no tokenizers to bridge them are an error."""
    if needs_big and big is None:
        raise ConfigError(f"{who} needs a big model (got big=None)")
    if needs_small and small is None:
        raise ConfigError(f"{who} needs a small model (got small=None); use BigOnly() to run the big model alone")
    if small is None or big is None or not (needs_small and needs_big):
        return True
    check_kinds(small, big)  # a mixed pair, or an encoder–decoder pair of two vocabularies, is refused
    if small.tokenizer is None or big.tokenizer is None:
        if small.vocab_size != big.vocab_size:
            raise VocabMismatchError(
                f"the small and big models have different vocabularies (small: {small.vocab_size} tokens, "
                f"big: {big.vocab_size} tokens) and no tokenizers to translate between them")
        return True
    return small.vocab_size == big.vocab_size and same_tokenizer(small.tokenizer, big.tokenizer)


def vocab_bridge(small, big, policy: Policy, sampler: Sampler, prompt, chat: bool, prompt_ids) -> VocabBridge:
    """How a small model with another tokenizer drafts for the big one (greedy only), or a clear
    error where that cannot be exact."""
    if not policy.drafts_across_vocabularies:
        raise VocabMismatchError(
            f"the small and big models split text differently (small: {small.vocab_size} tokens, big: "
            f"{big.vocab_size}); policy {policy.name!r} needs one shared tokenizer (speculative and bild "
            "can draft across tokenizers, greedy only)")
    if not (isinstance(prompt, str) or chat):
        raise VocabMismatchError("the small and big models have different tokenizers: pass a text prompt "
                                 "(token ids cannot be translated from one vocabulary to the other)")
    if not sampler.greedy:
        raise ConfigError("sampling with a small model of another tokenizer would not keep the big model's "
                          "distribution; use temperature=0 (greedy stays exact), or a small model that "
                          "shares the big model's tokenizer")
    return VocabBridge(small.tokenizer, big.tokenizer, encode_prompt(small, prompt, chat), len(prompt_ids))


def encode_prompt(model, prompt, chat: bool) -> list[int]:
    if isinstance(prompt, str) or (chat and isinstance(prompt, list) and prompt and isinstance(prompt[0], dict)):
        if isinstance(prompt, str) and not prompt.strip():
            raise PromptError("the prompt is empty")
        if model.tokenizer is None:
            raise PromptError(f"{model.spec} has no tokenizer: pass the prompt as a list of token ids")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = model.tokenizer.apply_chat(messages) if chat else model.tokenizer.encode(prompt)
    elif isinstance(prompt, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        bad = [t for t in ids if not 0 <= t < model.vocab_size]
        if bad:
            raise PromptError(f"prompt token ids must be in [0, {model.vocab_size}); got {bad[:5]}")
    else:
        raise PromptError("the prompt must be a string or a list of token ids "
                          "(or, with chat=True, a list of {'role', 'content'} messages)")
    if not ids:
        raise PromptError("the prompt is empty")
    return ids


def encode_source(model, prompt, chat: bool) -> list[int]:
    """An encoder–decoder model's source: the prompt's token ids (text or ids, never chat)."""
    if chat:
        raise ConfigError(f"chat does not apply to {model.spec}, an encoder–decoder model: give the source text "
                          "as the prompt and drop chat=True / --chat")
    return encode_prompt(model, prompt, chat=False)


def check_budget(prompt_ids: list[int], max_new_tokens: int, models: list, vocab_size: int) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer ≥ 1, got {max_new_tokens!r}")
    windows = [m.context_length for m in models if m.context_length]
    if windows and len(prompt_ids) + max_new_tokens > min(windows):
        raise PromptError(
            f"the prompt ({len(prompt_ids)} tokens) plus max_new_tokens ({max_new_tokens}) is "
            f"{len(prompt_ids) + max_new_tokens} tokens, beyond the context window of {min(windows)}; "
            "shorten the prompt or lower max_new_tokens")


def _takes(fn, name: str) -> bool:
    """Whether fn accepts the keyword argument `name` (by name or through **kwargs)."""
    params = inspect.signature(fn).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _stop_list(stop, model) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise ConfigError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    if model.tokenizer is None:
        raise ConfigError("stop strings need a tokenizer; this model takes token ids only")
    return stops
