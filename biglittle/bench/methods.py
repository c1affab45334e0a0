"""Benchmark methods: our policies and the peers users would otherwise pick, behind one interface.

A method spec is a string:
  big | small | speculative:draft=4,schedule=heuristic | bild:fallback=0.6,rollback=5 | …
      any policy `parse_policy` understands, run through `generate`
  hf-assisted[:num_assistant_tokens=N,schedule=constant|heuristic]
      HF transformers assisted generation (`generate(assistant_model=…)`), HF's default schedule
  hf-assisted-confidence[:threshold=0.4]
      the same with `assistant_confidence_threshold`
  prompt-lookup[:tokens=10]
      HF prompt-lookup decoding (big model only, n-gram drafts from the prompt)
Peers need both models on the HF backend (they call `model.net.generate`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..generate import generate
from ..numbers import parse_value
from ..policies import parse_policy
from ..errors import ConfigError

PEERS = ("hf-assisted", "hf-assisted-confidence", "prompt-lookup")


@dataclass
class Output:
    token_ids: list[int]
    text: str | None
    wall_s: float
    stats: dict = field(default_factory=dict)


@dataclass
class Method:
    spec: str
    name: str
    params: dict

    @property
    def is_peer(self) -> bool:
        return self.name in PEERS

    def policy(self):
        return parse_policy(self.spec)

    def uses(self) -> tuple[bool, bool]:
        """(needs the small model, needs the big model)."""
        if self.is_peer:
            return self.name != "prompt-lookup", True
        p = self.policy()
        return p.uses_small, p.uses_big

    def run(self, small, big, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
            seed: int = 0) -> Output:
        if self.is_peer:
            return run_hf_peer(self, small, big, prompt_ids, max_new_tokens, temperature, seed)
        pol = self.policy()
        r = generate(small if pol.uses_small else None, big if pol.uses_big else None, prompt_ids,
                        policy=pol, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        return Output(r.token_ids, r.text, r.stats.wall_s, r.stats.to_dict())


def split_specs(text: str) -> list[str]:
    """Split a comma list of method specs whose own parameters are comma-separated too:
    "big,bild:fallback=0.6,rollback=5" → ["big", "bild:fallback=0.6,rollback=5"]. ';' also separates."""
    specs: list[str] = []
    for part in (p.strip() for chunk in text.split(";") for p in chunk.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part and specs:
            specs[-1] += "," + part  # a parameter of the method before it
        else:
            specs.append(part)
    return list(dict.fromkeys(specs))


def parse_method(spec: str) -> Method:
    name, _, args = spec.strip().partition(":")
    params = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"method {spec!r}: parameters are key=value, got {item!r}")
        params[key] = parse_value(value)
    method = Method(spec.strip(), name, params)
    if not method.is_peer:
        method.policy()  # validates the policy spec now, before any model is loaded
    return method


def _hf_net(model, role: str):
    net = getattr(model, "net", None)
    if net is None or getattr(model, "backend", "") != "hf":
        raise ConfigError(f"HF peers need the {role} model on the HF backend (hf:…), got {model.spec}")
    return net


def run_hf_peer(method: Method, small, big, prompt_ids, max_new_tokens, temperature, seed) -> Output:
    import torch

    net = _hf_net(big, "big")
    kwargs: dict = dict(max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=temperature > 0,
                        pad_token_id=(sorted(big.eos_token_ids) or [0])[0])
    if temperature > 0:
        kwargs.update(temperature=temperature, top_k=None, top_p=None)
    if method.name in ("hf-assisted", "hf-assisted-confidence"):
        kwargs["assistant_model"] = _hf_net(small, "small")
        p = method.params
        if "num_assistant_tokens" in p:
            kwargs["num_assistant_tokens"] = int(p["num_assistant_tokens"])
        if "schedule" in p:
            kwargs["num_assistant_tokens_schedule"] = p["schedule"]
        if method.name == "hf-assisted-confidence":
            kwargs["assistant_confidence_threshold"] = float(p.get("threshold", 0.4))
    else:
        kwargs["prompt_lookup_num_tokens"] = int(method.params.get("tokens", 10))
    ids = torch.tensor([list(prompt_ids)])
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = net.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    wall = time.perf_counter() - t0
    new = out[0, ids.shape[1]:].tolist()
    text = big.tokenizer.decode(new) if big.tokenizer else None
    return Output(new, text, wall, {"new_tokens": len(new), "wall_s": wall})
