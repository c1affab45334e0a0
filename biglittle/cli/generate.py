"""`biglittle generate`: one prompt, one answer, with the stats of who wrote what."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.text import Text

from ..numbers import parse_float
from ..signal_points import pause_point
from .common import (BIG_DEVICE_HELP, CONTEXT_HELP, DEVICE_HELP, SMALL_DEVICE_HELP, err, load_pair, note, out,
                     user_errors)

ORIGIN_STYLE = {"small": "green", "copy": "cyan", "big": "bold magenta"}
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
    drafter: Optional[str] = typer.Option(None, help="Speculative: where drafts come from — model (the small model), "
                                          "lookup (copied from the prompt and the text so far; no small model "
                                          "needed) or hybrid (lookup, else the small model). [default: model]"),
    ngram: Optional[int] = typer.Option(None, help="Speculative with lookup/hybrid: the longest n-gram matched. "
                                        "[default: 3]"),
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
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    small_device: Optional[str] = typer.Option(None, "--small-device", help=SMALL_DEVICE_HELP),
    big_device: Optional[str] = typer.Option(None, "--big-device", help=BIG_DEVICE_HELP),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the big model's chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print the result and its stats as JSON."),
    show_origin: bool = typer.Option(False, "--show-origin", help="Colour each token by the model that wrote it "
                                     "(on a terminal; --json gives each token's origin anywhere)."),
    config: Optional[str] = typer.Option(None, "--config", help="Take the policy (and, unless given, the models) "
                                         "from a `biglittle tune` config file, or a router file."),
    verbose: bool = typer.Option(False, "--verbose", help="Let llama.cpp's own log lines through."),
    compare: bool = typer.Option(False, "--compare", help="After the answer, run the big model alone on the same "
                                 "prompt and print both speeds, the ratio and the agreement with big-only."),
):
    """Generate text with a small and a big model.

    Example: biglittle generate --small hf:./qwen-0.5b --big hf:./qwen-1.5b --policy speculative:draft=3 "def fib(n):"
    """
    from ..generate import stream

    settings = dict(fallback=fallback, rollback=rollback, max_small_steps=max_small_steps, draft=draft,
                    schedule=schedule, confidence_stop=confidence_stop, acceptance=acceptance, drafter=drafter,
                    ngram=ngram)
    with user_errors():
        pol = policy_from_options(policy, config, settings)
        check_sampling(temperature, top_k, top_p)
        if config:
            with open(config, encoding="utf-8") as f:
                cfg = json.load(f)
            small, big = small or cfg.get("small"), big or cfg.get("big")
        show_origin = show_origin and origin_shown(as_json)
        small_m, big_m = load_pair(small, big, pol.uses_small, pol.uses_big or compare, dtype, context, verbose,
                                   devices=(device, small_device, big_device))
        chunks = stream(small_m, big_m, prompt, policy=pol, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop, chat=chat)
        result = None
        for chunk in chunks:
            if not as_json and not show_origin:
                out.print(chunk.text, end="")
            result = chunk.final
            pause_point("generate-chunk")
    baseline = big_only_run(big_m, prompt, max_new_tokens, stop, chat, result) if compare else None
    if as_json:
        doc = result.to_dict()
        if baseline is not None:
            doc["compare"] = comparison(result, baseline)
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    if show_origin:
        out.print(origin_text(result, (big_m or small_m).tokenizer), end="")
    out.print()
    s = result.stats
    copied = f", {s.copied_tokens} copied" if s.copied_tokens else ""
    err.print(f"[dim]{s.new_tokens} tokens ({s.small_tokens} small{copied}, {s.big_tokens} big) · {s.big_calls} big "
              f"calls · {s.rollbacks} rollbacks · {s.fallbacks} fallbacks · {s.tokens_per_s:.1f} tok/s[/]"
              + ("  [green]■ small[/] [cyan]■ copied[/] [bold magenta]■ big[/]" if show_origin else ""))
    if baseline is not None:
        c = comparison(result, baseline)
        err.print(f"big model alone: {c['big_only_s']:.2f} s ({c['big_only_tokens_per_s']:.1f} tok/s) · this policy: "
                  f"{c['policy_s']:.2f} s · [bold]{c['speedup']:.2f}×[/] · agreement with big-only "
                  f"{100 * c['agreement']:.0f}%{'' if c['exact'] else ' (the answers differ)'}")


def big_only_run(big_m, prompt, max_new_tokens, stop, chat, result):
    """The big model alone on the same prompt (greedy, same limits): the baseline of --compare."""
    from ..generate import generate
    from ..policies import BigOnly

    if result.stats.policy == "big":
        note("--compare: the policy is already the big model alone")
    with user_errors():
        return generate(None, big_m, prompt, policy=BigOnly(), max_new_tokens=max_new_tokens, stop=stop, chat=chat)


def comparison(result, baseline) -> dict:
    """Both runs' times, the speedup and the agreement (tokens.agreement: over the longer answer)."""
    from ..tokens import agreement

    agree = agreement(result.token_ids, baseline.token_ids)
    return {"policy_s": result.stats.wall_s, "big_only_s": baseline.stats.wall_s,
            "big_only_tokens_per_s": baseline.stats.tokens_per_s,
            "speedup": baseline.stats.wall_s / result.stats.wall_s if result.stats.wall_s else None,
            "agreement": agree["agreement"], "exact": agree["exact"]}


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
