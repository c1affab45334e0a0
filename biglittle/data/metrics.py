"""Quality metrics for the benchmark tasks, and agreement between two token streams.

Every score is "higher is better" and on a 0-100 scale (ROUGE F1 x 100, sacreBLEU's BLEU and
chrF as they come, accuracy in percent), so a table can show them side by side.
`agreement` is a fraction in [0, 1]: it compares tokens, not text.

rouge-score and sacrebleu are imported on first use: they come with the `bench` extra.
"""
from __future__ import annotations

import ast
import re
import statistics
import textwrap
import warnings
from decimal import Decimal, InvalidOperation
from typing import Sequence

from ..tokens import agreement  # noqa: F401  (the one definition; re-exported for the data API)


def _check_lengths(outputs: Sequence[str], references: Sequence[str]) -> None:
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references: they must pair up")
    if not outputs:
        raise ValueError("no outputs to score")


def rouge(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 (x 100) with Porter stemming, as `rouge-score` computes them."""
    from rouge_score import rouge_scorer

    _check_lengths(outputs, references)
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for out, ref in zip(outputs, references):
        scores = scorer.score(ref, out)          # score(target, prediction)
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(outputs) for k, v in totals.items()}


def bleu_chrf(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF from sacrebleu (one reference per output), both 0-100."""
    import sacrebleu

    _check_lengths(outputs, references)
    outs, refs = list(outputs), [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(outs, refs).score),
        "chrf": float(sacrebleu.corpus_chrf(outs, refs).score),
    }


# A number: optional minus sign, either digits grouped by commas (1,234,567) or plain digits,
# then an optional decimal part. "3, 4" stays two numbers because of the space.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_MARKERS = (
    re.compile(r"####\s*"),                                  # GSM8K's own answer line
    re.compile(r"answer\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE),   # "the answer is", "Answer: ", "final answer ="
    re.compile(r"\\boxed\{\s*"),                             # LaTeX \boxed{...}
)


def extract_number(text: str) -> str | None:
    """The final numeric answer in a model's output, normalized ("1,234.50" -> "1234.5"), or None.

    Looks, in order, right after the last "####", the last "answer is"/"answer:", the last
    "\\boxed{" for a number (currency signs and bold marks skipped). Without a marker, or with
    no number right after it, it takes the last number in the text. Commas are ignored.
    """
    text = text.replace("\u2212", "-")  # Unicode minus
    for marker in _MARKERS:
        hits = list(marker.finditer(text))
        if hits:
            tail = text[hits[-1].end():]
            m = _NUMBER_RE.match(re.sub(r"^[\s$€£*]+", "", tail))   # "is $1,200" / "is **42**"
            if m:
                return _normalize(m.group())
    numbers = _NUMBER_RE.findall(text)
    return _normalize(numbers[-1]) if numbers else None


def _normalize(number: str) -> str:
    try:
        d = Decimal(number.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex only matches valid numbers
        return number
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))  # "28080.00" -> "28080"
    return format(d.normalize(), "f")


def numbers_equal(a: str | None, b: str | None) -> bool:
    """True when both parse to the same number ("1,200" == "1200.0")."""
    if a is None or b is None:
        return False
    try:
        return Decimal(a.replace(",", "")) == Decimal(b.replace(",", ""))
    except InvalidOperation:
        return a.strip() == b.strip()


def gsm_accuracy(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy (percent) of the final number in each output against the reference number."""
    _check_lengths(outputs, references)
    hits = sum(numbers_equal(extract_number(o), extract_number(str(r))) for o, r in zip(outputs, references))
    return {"accuracy": 100.0 * hits / len(outputs)}


def mean_agreement(results: Sequence[dict]) -> dict[str, float]:
    """Average a list of `agreement` results: mean agreement, exact-match rate, mean common prefix."""
    if not results:
        raise ValueError("no agreement results to average")
    return {
        "agreement": statistics.mean(r["agreement"] for r in results),
        "exact": statistics.mean(1.0 if r["exact"] else 0.0 for r in results),
        "common_prefix": statistics.mean(r["common_prefix"] for r in results),
    }


# ---------------------------------------------------------------------------------------------
# Code answers: does the code parse

_FENCE = re.compile(r"```[ \t]*(python3?|py)?", re.IGNORECASE)   # a fence line, stripped, with its language tag


def code_block(text: str) -> str:
    """The code of an answer: its first ```python block (to the end of the text if never closed), else
    its first bare ``` block, else the whole text up to a lone fence line (an answer that continues a
    prompt which itself opened the block ends with the closing fence)."""
    lines = text.splitlines()
    fences = [i for i, ln in enumerate(lines) if _FENCE.fullmatch(ln.strip())]
    tagged = [i for i in fences if _FENCE.fullmatch(lines[i].strip()).group(1)]
    start = tagged[0] + 1 if tagged else fences[0] + 1 if len(fences) >= 2 else 0
    end = next((i for i in fences if i >= start), len(lines))
    return textwrap.dedent("\n".join(lines[start:end]))


def parses(code: str) -> bool:
    """True when `code` is Python that `ast.parse` accepts and holds at least one statement (an empty
    answer parses, but is no answer)."""
    try:
        with warnings.catch_warnings():    # invalid escapes etc. warn but still parse
            warnings.simplefilter("ignore")
            return bool(ast.parse(code).body)
    except (SyntaxError, ValueError, RecursionError):   # ValueError: NUL bytes; RecursionError: deep nesting
        return False


def code_block_parses(outputs: Sequence[str]) -> dict[str, float]:
    """Percent of outputs whose code (`code_block`) parses: a check that edited code is still Python."""
    if not outputs:
        raise ValueError("no outputs to score")
    return {"parses": 100.0 * sum(parses(code_block(o)) for o in outputs) / len(outputs)}


# ---------------------------------------------------------------------------------------------
# Open-ended text: how repetitive and how varied (contrastive decoding's claims, Li et al. 2023)

def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repetition_rate(tokens: Sequence, n: int = 4) -> float:
    """Share of a text's n-grams that already occurred earlier in the same text (0: none repeat).
    Degenerate loops ("the the the …") push it towards 1."""
    grams = _ngrams(list(tokens), n)
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def distinct_n(texts: Sequence[Sequence], n: int) -> float:
    """distinct-n (Li et al. 2016): unique n-grams over all n-grams, pooled over the texts."""
    grams = [g for t in texts for g in _ngrams(list(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0
