"""`biglittle generate`: one prompt, one answer, with the stats of who wrote what."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.text import Text

from ..numbers import parse_float
from .common import CONTEXT_HELP, err, load_pair, note, out, user_errors

ORIGIN_STYLE = {"small": "green", "big": "bold magenta"}
POLICY_HELP = ("Policy spec, as serve, bench and server requests take it: bild, speculative, big, small, "
               "contrastive, cascade, a spec with settings such as speculative:draft=2 or "
               "bild:fallback=0.6,rollback=5, or a `biglittle tune` .json file. The flags below set one "
               "setting of it; a flag the policy does not use is refused. [default: bild]")


def policy_from_options(spec: Optional[str], config: Optional[str], settings: dict):
    """The policy of --policy (a spec) or --config (a file), with the settings given as flags applied;
    a setting the policy does not take is refused with the server's message for the same mistake."""
    from ..errors import ConfigError
    from ..policies import apply_overrides, load_policy_config, parse_policy

    if spec and config:
        raise ConfigError("give --policy or --config, not both (the config file names its policy)")
    pol = load_policy_config(config) if config else parse_policy(spec or "bild")
    given = {key: value for key, value in settings.items() if value is not None}
    if "rollback" in given:
        given["rollback"] = parse_float(given["rollback"], "--rollback")
    if given.get("max_small_steps") == 0:
        given["max_small_steps"] = None  # the flag's 0 means no limit
    return apply_overrides(pol, given) if given else pol


def check_sampling(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    """Greedy decoding ignores --top-k and --top-p: refuse them rather than ignore them."""
    from ..errors import ConfigError

    given = [flag for flag, value in (("--top-k", top_k), ("--top-p", top_p)) if value is not None]
    if given and temperature == 0:
        raise ConfigError(f"{' and '.join(given)} apply only when sampling; at --temperature 0 (the default) "
                          "decoding is greedy: give --temperature > 0, or drop them")


def generate(
    prompt: str = typer.Argument(..., help="The prompt text."),
    small: Optional[str] = typer.Option(None, help="Small model spec, e.g. hf:/path/to/folder "
                                        "[default: the qwen-coder pair's]."),
    big: Optional[str] = typer.Option(None, help="Big model spec, e.g. hf:/path/to/folder "
                                      "[default: the qwen-coder pair's]."),
    policy: Optional[str] = typer.Option(None, help=POLICY_HELP, show_default=False),
    fallback: Optional[float] = typer.Option(None, help="BiLD: hand over to the big model when the small max-prob "
                                             "is below this (>1: always). [default: 0.6]"),
    rollback: Optional[str] = typer.Option(None, help="BiLD: undo small tokens with −log p_big above this "
                                           "(0: always, inf: never). [default: 5]"),
    max_small_steps: Optional[int] = typer.Option(None, help="BiLD: call the big model after this many small "
                                                  "tokens (0: no limit). [default: 10]"),
    draft: Optional[int] = typer.Option(None, help="Speculative: tokens drafted per round (γ). [default: 4]"),
    schedule: Optional[str] = typer.Option(None, help="Speculative: constant, heuristic or auto. [default: constant]"),
    confidence_stop: Optional[float] = typer.Option(None, help="Speculative: stop drafting below this small max-prob."),
    acceptance: Optional[str] = typer.Option(None, help="Speculative: exact (the big model's own answer; on llama.cpp "
                                             "it can still differ from big-only, whose kernels score one token at "
                                             "a time) or typical (accepts more, lossy). [default: exact]"),
    temperature: float = typer.Option(0.0, help="0 = greedy; >0 samples."),
    top_k: Optional[int] = typer.Option(None, help="Sample from the k most likely tokens (needs --temperature > 0)."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling mass (needs --temperature > 0)."),
    seed: Optional[int] = typer.Option(None, help="Random seed for sampling (default: a fresh one each run)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Most tokens to generate."),
    stop: Optional[list[str]] = typer.Option(None, help="Stop when this text appears (repeatable)."),
    context: Optional[int] = typer.Option(None, "--context", help=CONTEXT_HELP, show_default=False),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models: float32 or bfloat16."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the big model's chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print the result and its stats as JSON."),
    show_origin: bool = typer.Option(False, "--show-origin", help="Colour each token by the model that wrote it "
                                     "(on a terminal; --json gives each token's origin anywhere)."),
    config: Optional[str] = typer.Option(None, "--config", help="Take the policy (and, unless given, the models) "
                                         "from a `biglittle tune` config file, or a router file."),
    verbose: bool = typer.Option(False, "--verbose", help="Let llama.cpp's own log lines through."),
):
    """Generate text with a small and a big model.

    Example: biglittle generate --small hf:./qwen-0.5b --big hf:./qwen-1.5b --policy speculative:draft=3 "def fib(n):"
    """
    from ..generate import stream

    settings = dict(fallback=fallback, rollback=rollback, max_small_steps=max_small_steps, draft=draft,
                    schedule=schedule, confidence_stop=confidence_stop, acceptance=acceptance)
    with user_errors():
        pol = policy_from_options(policy, config, settings)
        check_sampling(temperature, top_k, top_p)
        if config:
            with open(config, encoding="utf-8") as f:
                cfg = json.load(f)
            small, big = small or cfg.get("small"), big or cfg.get("big")
        show_origin = show_origin and origin_shown(as_json)
        small_m, big_m = load_pair(small, big, pol.uses_small, pol.uses_big, dtype, context, verbose)
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


def origin_shown(as_json: bool) -> bool:
    """Whether --show-origin can do anything here; if not, say why (instead of ignoring it)."""
    if as_json:
        note("--show-origin has no effect with --json (its \"origins\" list says who wrote each token)")
        return False
    if not out.is_terminal:
        note("--show-origin has no effect when the output is not a terminal (no colours); "
             "--json lists who wrote each token")
        return False
    return True


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
