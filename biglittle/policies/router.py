"""A query router (Hybrid LLM, Ding et al. 2024): decide from the prompt alone, before any
generation, whether the small model's answer will do or the big model should answer.

The decision comes from a logistic-regression classifier on cheap features of ONE small-model
forward pass over the prompt (how surprised the small model is by the prompt, how unsure it is
about what comes next). Routed to the small model, generation continues from that same pass,
so the router costs nothing extra there; routed to the big model, the big model answers alone.

    clf = train_classifier(features, labels)              # labels: 1 = big needed
    router = bl.Router(classifier=clf)  or  bl.Router.load("router.json")
    bl.generate(small, big, prompt, policy=router)

`biglittle router train` builds the classifier from a JSONL file of {"prompt", "label"} lines.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..decoding.result import Commit, Stats, TokenLogprob
from ..decoding.sampling import Sampler
from ..decoding.session import TrackedSession
from ..errors import ConfigError
from ..numbers import check_number, json_number
from ..tokens import agreement
from .base import Policy
from .cascade import big_answer, write_alone

FEATURES = ("log_length", "mean_logprob", "min_logprob", "mean_entropy", "last_entropy", "last_max_prob")
FORMAT = "biglittle-router/1"


def features_from_logp(prompt_ids: Sequence[int], logp: torch.Tensor) -> list[float]:
    """The router's features from the small model's log-probs over the prompt, [len(prompt), vocab]
    (row i is the distribution of the token after prompt[i]); in the order of FEATURES."""
    ids = torch.tensor(list(prompt_ids), dtype=torch.long)
    entropy = -(logp.exp() * logp.clamp_min(-1e4)).sum(-1)
    seen = logp[:-1].gather(1, ids[1:, None])[:, 0]  # log-prob of each prompt token after the first
    seen = seen if len(seen) else torch.zeros(1)
    return [math.log(len(ids)), float(seen.mean()), float(seen.min()), float(entropy.mean()),
            float(entropy[-1]), float(logp[-1].max().exp())]


def prompt_features(small, prompt_ids: Sequence[int]) -> list[float]:
    """The router's features for a prompt: one small-model forward pass."""
    return features_from_logp(prompt_ids, small.session().extend(list(prompt_ids)))


@dataclass(frozen=True)
class Classifier:
    """Logistic regression on standardised features: P(big needed) = σ(w · (x − mean) / scale + b)."""
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    info: dict = field(default_factory=dict, compare=False)  # how it was trained (counts, accuracy, models)

    def __post_init__(self):
        n = len(self.features)
        if not n or not all(len(v) == n for v in (self.mean, self.scale, self.weights)):
            raise ConfigError("a router classifier needs one mean, scale and weight per feature")

    def p_big(self, x) -> torch.Tensor:
        """P(big needed) for features x, [n, features] or [features]."""
        x = torch.as_tensor(x, dtype=torch.float64)
        z = (x - torch.tensor(self.mean, dtype=torch.float64)) / torch.tensor(self.scale, dtype=torch.float64)
        return torch.sigmoid(z @ torch.tensor(self.weights, dtype=torch.float64) + self.bias)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "features": list(self.features), "mean": list(self.mean),
                "scale": list(self.scale), "weights": list(self.weights), "bias": self.bias, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> "Classifier":
        if d.get("format") != FORMAT:
            raise ConfigError(f"not a biglittle router file (format {d.get('format')!r}, expected {FORMAT!r})")
        try:
            return cls(tuple(d["features"]), tuple(map(float, d["mean"])), tuple(map(float, d["scale"])),
                       tuple(map(float, d["weights"])), float(d["bias"]), dict(d.get("info", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"bad router file: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Classifier":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read router file {str(path)!r}: {e}") from None


def train_classifier(x, y, l2: float = 1e-2, names: Sequence[str] = FEATURES, steps: int = 100) -> Classifier:
    """Fit a logistic regression: x [n, features], y [n] with 1 = big needed, 0 = small will do.

    Features are standardised first; `l2` (on the weights, per example) keeps the weights finite
    on separable data. Full-batch L-BFGS in float64: deterministic."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[1] != len(names):
        raise ConfigError(f"need x [n, {len(names)}] and y [n]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if not ((y == 0) | (y == 1)).all() or y.min() == y.max():
        raise ConfigError("training a router needs examples of both labels (small and big)")
    mean, scale = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    z = (x - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    clf = Classifier(tuple(names), tuple(mean.tolist()), tuple(scale.tolist()), tuple(w.detach().tolist()),
                     float(b.detach()))
    accuracy = float(((clf.p_big(x) >= 0.5).double() == y).double().mean())
    clf.info.update(examples=len(y), big=int(y.sum()), small=int(len(y) - y.sum()), train_accuracy=accuracy, l2=l2)
    return clf


def label_by_agreement(small, big, prompt_ids: Sequence[int], max_new_tokens: int = 64,
                       min_agreement: float = 0.9) -> str:
    """"small" if the small model's greedy answer agrees with the big model's on at least
    `min_agreement` of the positions (biglittle.data.agreement), else "big"."""
    answers = [greedy_answer(model, role, prompt_ids, max_new_tokens) for model, role in ((small, "small"), (big, "big"))]
    return "small" if agreement(*answers)["agreement"] >= min_agreement else "big"


def greedy_answer(model, role: str, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """The model's greedy answer alone (the same tokens SmallOnly / BigOnly write)."""
    tracked = TrackedSession(model.session(), role, Stats())
    return [t for t, _ in write_alone(tracked, list(prompt_ids), Sampler(), max_new_tokens, model.eos_token_ids)]


def train_router(small, prompts: Sequence[Sequence[int]], labels: Sequence[str], l2: float = 1e-2) -> Classifier:
    """Train a router on prompt token ids and their labels ("small" or "big")."""
    bad = sorted({lab for lab in labels if lab not in ("small", "big")}, key=str)
    if bad:
        raise ConfigError(f"labels must be 'small' or 'big', got {bad}")
    if len(prompts) != len(labels):
        raise ConfigError(f"{len(prompts)} prompts but {len(labels)} labels")
    x = [prompt_features(small, p) for p in prompts]
    clf = train_classifier(x, [1.0 if lab == "big" else 0.0 for lab in labels], l2=l2)
    clf.info["small_model"] = small.spec
    return clf


@dataclass(frozen=True)
class Router(Policy):
    """Route each request to the small or the big model from the prompt alone.

    path: a router JSON file from `biglittle router train` (or pass `classifier=` directly).
    threshold: send the request to the big model when P(big needed) ≥ this; 0 always sends it
      to the big model, anything above 1 never does.
    """
    path: str | None = None
    threshold: float = 0.5
    classifier: Classifier | None = field(default=None, repr=False, compare=False)
    name = "router"
    drafts_across_vocabularies = False  # its own loop compares the two models' tokens directly

    def __post_init__(self):
        check_number("threshold", self.threshold, allow_inf=True)
        if self.classifier is None:
            if not self.path:
                raise ConfigError("a router needs a trained classifier: Router.load('router.json') "
                                  "(train one with `biglittle router train`)")
            object.__setattr__(self, "classifier", Classifier.load(self.path))
        if tuple(self.classifier.features) != FEATURES:
            raise ConfigError(f"this router was trained on features {list(self.classifier.features)}; "
                              f"this version computes {list(FEATURES)}")

    @classmethod
    def load(cls, path: str | Path, threshold: float = 0.5) -> "Router":
        return cls(path=str(path), threshold=threshold)

    def describe(self) -> str:
        return f"router:path={self.path},threshold={self.threshold}" if self.path else \
            f"router:threshold={self.threshold}"

    def run(self, small, big, prompt_ids, sampler, max_new_tokens, stats, logprobs: int | None = None):
        """Yield Commits after one small pass over the prompt decides who answers; log-probs (when
        `logprobs` is an integer) are those of the model it chose."""
        small_sess = TrackedSession(small.session(), "small", stats)
        logp = small_sess.extend(list(prompt_ids), keep=len(prompt_ids))[0]
        feats = features_from_logp(prompt_ids, logp)
        p = float(self.classifier.p_big(feats))
        to_big = p >= self.threshold
        stats.extra.update(answered_by="big" if to_big else "small", p_big=p, threshold=json_number(self.threshold),
                           features=dict(zip(FEATURES, feats)))
        if to_big:
            yield from big_answer(big, None, prompt_ids, sampler, max_new_tokens, stats, logprobs)
            return
        stats.finish_reason = "length"
        eos = small.eos_token_ids
        for token, row in write_alone(small_sess, [], sampler, max_new_tokens, eos, first_row=logp[-1]):
            stats.rounds += 1
            lps = None if logprobs is None else [TokenLogprob.from_row(row, token, logprobs, "small")]
            yield Commit([token], ["small"], ["small"], lps)
            if token in eos:
                stats.finish_reason = "eos"
