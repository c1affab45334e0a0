"""`biglittle generate`: one prompt, one answer, with the stats of who wrote what."""
from __future__ import annotations

import json
from enum import Enum
from typing import Optional

import typer
from rich.text import Text

from ..numbers import parse_float
from .common import err, load_pair, out, user_errors

ORIGIN_STYLE = {"small": "green", "big": "bold magenta"}


class PolicyName(str, Enum):
    bild = "bild"
    speculative = "speculative"
    big = "big"
    small = "small"


def build_policy(name: str, fallback: float, rollback: float, max_small_steps: Optional[int],
                 draft: int, schedule: str, confidence_stop: Optional[float], acceptance: str):
    from ..policies import BigOnly, BiLD, SmallOnly, Speculative

    if name == "bild":
        return BiLD(fallback=fallback, rollback=rollback, max_small_steps=max_small_steps or None)
    if name == "speculative":
        return Speculative(draft=draft, schedule=schedule, confidence_stop=confidence_stop, acceptance=acceptance)
    return BigOnly() if name == "big" else SmallOnly()


def generate(
    prompt: str = typer.Argument(..., help="The prompt text."),
    small: Optional[str] = typer.Option(None, help="Small model spec, e.g. hf:/path/to/folder."),
    big: Optional[str] = typer.Option(None, help="Big model spec, e.g. hf:/path/to/folder."),
    policy: PolicyName = typer.Option(PolicyName.bild, help="Decoding policy."),
    fallback: float = typer.Option(0.6, help="BiLD: hand over to the big model when the small max-prob is below this (>1: always)."),
    rollback: str = typer.Option("5.0", help="BiLD: undo small tokens with −log p_big above this (0: always, inf: never)."),
    max_small_steps: int = typer.Option(10, help="BiLD: call the big model after this many small tokens (0: no limit)."),
    draft: int = typer.Option(4, help="Speculative: tokens drafted per round (γ)."),
    schedule: str = typer.Option("constant", help="Speculative: constant, heuristic or auto."),
    confidence_stop: Optional[float] = typer.Option(None, help="Speculative: stop drafting below this small max-prob."),
    acceptance: str = typer.Option("exact", help="Speculative: exact (lossless) or typical (lossy)."),
    temperature: float = typer.Option(0.0, help="0 = greedy; >0 samples."),
    top_k: Optional[int] = typer.Option(None, help="Sample from the k most likely tokens."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, help="Random seed for sampling (default: a fresh one each run)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Most tokens to generate."),
    stop: Optional[list[str]] = typer.Option(None, help="Stop when this text appears (repeatable)."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models: float32 or bfloat16."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the big model's chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print the result and its stats as JSON."),
    show_origin: bool = typer.Option(False, "--show-origin", help="Colour each token by the model that wrote it."),
    config: Optional[str] = typer.Option(None, "--config", help="Take the policy (and, unless given, the models) "
                                         "from a `biglittle tune` config file, or a router file."),
):
    """Generate text with a small and a big model.

    Example: biglittle generate --small hf:./qwen-0.5b --big hf:./qwen-1.5b --policy bild "def fib(n):"
    """
    from ..generate import stream
    from ..policies import load_policy_config

    with user_errors():
        pol = build_policy(policy.value, fallback, parse_float(rollback, "--rollback"), max_small_steps, draft,
                           schedule, confidence_stop, acceptance)
        if config:
            pol = load_policy_config(config)
            with open(config, encoding="utf-8") as f:
                cfg = json.load(f)
            small, big = small or cfg.get("small"), big or cfg.get("big")
        small_m, big_m = load_pair(small, big, pol.uses_small, pol.uses_big, dtype)
        chunks = stream(small_m, big_m, prompt, policy=pol, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop, chat=chat)
        result = None
        for chunk in chunks:
            if not as_json and not show_origin:
                out.print(chunk.text, end="")
            result = chunk.final
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    if show_origin:
        out.print(origin_text(result, (big_m or small_m).tokenizer), end="")
    out.print()
    s = result.stats
    err.print(f"[dim]{s.new_tokens} tokens ({s.small_tokens} small, {s.big_tokens} big) · {s.big_calls} big calls · "
              f"{s.rollbacks} rollbacks · {s.fallbacks} fallbacks · {s.tokens_per_s:.1f} tok/s[/]"
              + ("  [green]■ small[/] [bold magenta]■ big[/]" if show_origin else ""))


def origin_text(result, tokenizer) -> Text:
    """The generated text, each token's piece coloured by the model that wrote it."""
    text = Text()
    if tokenizer is None:
        for tok, who in zip(result.token_ids, result.origins):
            text.append(f"{tok} ", style=ORIGIN_STYLE[who])
        return text
    before = ""
    for i, who in enumerate(result.origins):
        upto = tokenizer.decode(result.token_ids[: i + 1])
        text.append(upto[len(before):] if upto.startswith(before) else upto, style=ORIGIN_STYLE[who])
        before = upto
    return text
