"""Calibration and auto-tuning: pick the fastest policy whose quality on sample prompts is shown
to meet a floor.

    result = tune(small, big, prompts, min_agreement=0.99)
    result.best.spec           # e.g. "speculative:draft=16,schedule=auto,...,drafter=lookup,ngram=3"
    result.save("tune.json")   # generate --config, bench --methods tune.json, serve --policy tune.json

What it does, greedy, on the sample prompts:
 1. runs big-only (the reference), small-only and every token-level candidate (speculative draft
    lengths, the prompt-lookup and hybrid drafters, BiLD's fallback × rollback grid) after a
    warm-up, round-robin: prompt by prompt, each candidate in turn (the order rotates);
 2. evaluates cascades at thresholds between the observed scores from the small-only and
    big-only runs (exact under greedy decoding: a cascade's answer IS one of the two), timed as
    the sum of what they run (the small answer, the big scoring pass, the big answer when
    escalated); the fastest cascade per scorer that meets the floor is then run for real;
 3. quality: each candidate's difference to big-only with a 95% paired percentile bootstrap
    interval over prompts; a candidate meets the floor only when the interval's low end does
    (a few lucky prompts cannot pass it);
 4. speed: the candidates meeting the floor run `repeats` rounds in all (those under half the
    best first-round speedup are not timed again: they cannot win). `speedup` is the median over
    rounds of big-only's wall time over the candidate's in the same round. The fastest measured
    candidate meeting the floor is chosen; big-only always meets it. An estimate (counted calls
    priced at measured per-call costs) stays beside it as `est_speedup` only where it is within
    15% of the measured speedup; `est_error` says how far off it is everywhere.

Quality: agreement with the big model's greedy tokens (biglittle.tokens.agreement, averaged over
prompts) by default, or, for a task with references, the task's primary metric: at most
`max_metric_loss` (a fraction of big-only's score) worse than big-only.

Modules: run (tune, TuneResult), candidates (Candidate, grid), timing (the round-robin clock),
cascades (cascades composed from the measured runs), quality (the floor), bootstrap (intervals
over prompts), costs (per-call costs for the estimate), prompts (sample prompts and JSONL files).
"""
from ..policies.registry import CONFIG_FORMAT, load_policy_config, read_config  # the file format lives with the registry
from .bootstrap import (CONFIDENCE, RESAMPLES, bootstrap_interval, metric_on_prompts, percentile_interval,
                        resample_indices)
from .candidates import DRAFTS, FALLBACKS, LOOKUPS, ROLLBACKS, Candidate, grid
from .cascades import CASCADE_SCORERS, MAX_THRESHOLDS
from .costs import Costs, measure_costs
from .prompts import default_n, read_jsonl, read_prompts, task_prompts
from .run import EST_TOLERANCE, PRUNE, TuneResult, tune

__all__ = ["CASCADE_SCORERS", "CONFIDENCE", "CONFIG_FORMAT", "DRAFTS", "EST_TOLERANCE", "FALLBACKS", "LOOKUPS",
           "MAX_THRESHOLDS", "PRUNE", "RESAMPLES", "ROLLBACKS", "Candidate", "Costs", "TuneResult",
           "bootstrap_interval", "default_n", "grid", "load_policy_config", "measure_costs", "metric_on_prompts",
           "percentile_interval", "read_config", "read_jsonl", "read_prompts", "resample_indices", "task_prompts",
           "tune"]
