"""Benchmark data: metrics against hand-computed values, prompt builders, the checked cache,
and (slow) the real fetch of every task."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch

from biglittle.data import TASKS, DataError, Example, agreement, get_task, mean_agreement
from biglittle.data import cache, metrics, sources
from biglittle.errors import BigLittleError

# --- metrics -------------------------------------------------------------------------------------


def test_rouge_by_hand():
    # ref:  the cat sat on the mat  (6 tokens)      out: the cat lay on a mat  (6 tokens)
    # unigrams in common (clipped): the, cat, on, mat = 4   -> P = R = F = 4/6
    # bigrams in common: "the cat" = 1 of 5 each            -> F = 1/5
    # longest common subsequence: the cat on mat = 4        -> F = 4/6
    s = metrics.rouge(["the cat lay on a mat"], ["the cat sat on the mat"])
    assert s["rouge1"] == pytest.approx(100 * 4 / 6)
    assert s["rouge2"] == pytest.approx(100 * 1 / 5)
    assert s["rougeL"] == pytest.approx(100 * 4 / 6)


def test_rouge_stems_and_averages():
    # Porter stemming: cats -> cat, running -> run, so these match fully.
    assert metrics.rouge(["cat run"], ["cats running"])["rouge1"] == pytest.approx(100.0)
    # mean over pairs: one perfect (100), one disjoint (0)
    s = metrics.rouge(["a b", "x y"], ["a b", "p q"])
    assert s["rouge1"] == pytest.approx(50.0)


def test_bleu_chrf_limits():
    sent = "the quick brown fox jumps over the lazy dog"
    same = metrics.bleu_chrf([sent], [sent])
    assert same["bleu"] == pytest.approx(100.0)
    assert same["chrf"] == pytest.approx(100.0)
    disjoint = metrics.bleu_chrf(["abc def"], ["xyz uvw"])
    assert disjoint == {"bleu": 0.0, "chrf": 0.0}


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="pair up"):
        metrics.rouge(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no outputs"):
        metrics.bleu_chrf([], [])


@pytest.mark.parametrize("text, number", [
    ("#### 1,234", "1234"),
    ("She pays 3 + 4 = 7 dollars.\n#### 7", "7"),
    ("The answer is $1,234.50.", "1234.5"),
    ("So she has 3 apples and 4 pears, 7 in total.", "7"),
    ("Answer: -12", "-12"),
    ("The answer is **42**.", "42"),
    ("\\boxed{3.0}", "3"),
    ("The answer is 42. Check: 6*7=42, plus 1 is 43", "42"),   # the marker beats the last number
    ("It costs 1,000,000 dollars.", "1000000"),
    ("Numbers 1,2,3", "3"),                                      # not a thousands group
    ("The total is 12.5%.", "12.5"),
    ("The final answer is: 1,000.", "1000"),                    # trailing full stop is not a decimal
    ("the answer is \u22123", "-3"),                            # Unicode minus
    ("The answer is below.\n5 + 5 = 10", "10"),                 # no number right after the marker
    ("no number here", None),
    ("", None),
])
def test_extract_number(text, number):
    assert metrics.extract_number(text) == number


def test_gsm_accuracy_and_number_equality():
    assert metrics.numbers_equal("1,200", "1200.0")
    assert not metrics.numbers_equal("12", "120")
    assert not metrics.numbers_equal(None, "1")
    outs = ["... so 28,080 in all. The answer is 28080.", "The answer is 5.", "I don't know."]
    assert metrics.gsm_accuracy(outs, ["28080", "6", "1"]) == {"accuracy": pytest.approx(100 / 3)}


def test_agreement_small_lists():
    a = agreement([1, 2, 3, 4], [1, 2, 9, 4, 5])
    assert a == {"agreement": 0.6, "exact": False, "common_prefix": 2, "compared": 5}
    assert agreement([5, 6, 7], [5, 6, 7]) == {"agreement": 1.0, "exact": True, "common_prefix": 3, "compared": 3}
    # the longer length is the denominator: stopping early is not agreeing
    assert agreement([1, 2], [1, 2, 3]) == {"agreement": 2 / 3, "exact": False, "common_prefix": 2, "compared": 3}
    assert agreement([9], [1]) == {"agreement": 0.0, "exact": False, "common_prefix": 0, "compared": 1}
    assert agreement([], []) == {"agreement": 1.0, "exact": True, "common_prefix": 0, "compared": 0}
    assert agreement([], [1])["agreement"] == 0.0
    # tensors compare by value
    assert agreement(torch.tensor([3, 4, 5]), [3, 4, 6])["common_prefix"] == 2


def test_mean_agreement():
    rs = [agreement([1, 2], [1, 2]), agreement([1, 2, 3, 4], [1, 0, 3, 0])]
    m = mean_agreement(rs)
    assert m["agreement"] == pytest.approx(0.75)
    assert m["exact"] == pytest.approx(0.5)
    assert m["common_prefix"] == pytest.approx(1.5)
    with pytest.raises(ValueError):
        mean_agreement([])


# --- tasks: registry, prompt builders, parsing -------------------------------------------------


def test_registry_and_unknown_name():
    assert set(TASKS) == {"xsum", "deen", "mtbench", "gsm", "code", "code-edit"}
    assert get_task("deen") is TASKS["deen"]
    with pytest.raises(DataError) as e:
        get_task("squad")
    assert "code, code-edit, deen, gsm, mtbench, xsum" in str(e.value)
    assert isinstance(e.value, BigLittleError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_its_contract(name):
    t = TASKS[name]
    assert t.name == name
    assert t.max_new_tokens > 0
    assert t.CITATION and t.LICENSE_NOTE and t.description
    assert (t.primary_metric is None) == (name in ("mtbench", "code", "code-edit"))


@pytest.mark.parametrize("name, source, must_say", [
    ("xsum", "The council voted to close the library on Sundays.", "Summarize the article in one sentence."),
    ("deen", "Das Wetter ist heute schön.", "Translate"),
    ("mtbench", "Write a haiku about autumn.", ""),
    ("gsm", "Tom has 3 apples and buys 4 more. How many apples does he have?", "The answer is"),
    ("code", "Write a Python function that adds two numbers.", ""),
])
def test_prompt_builders(name, source, must_say):
    t = get_task(name)
    ex = Example(id="x", source=source, reference=None, prompt="", messages=[])
    chat = t.build_prompt(ex, chat=True)
    plain = t.build_prompt(ex, chat=False)
    assert isinstance(chat, list) and len(chat) == 1 and chat[0]["role"] == "user"
    assert source in chat[0]["content"] and must_say in chat[0]["content"]
    assert isinstance(plain, str) and source in plain
    # the plain prompt ends where the model's answer should start
    assert plain.rstrip(" ").endswith(("summary:", "English:", "Assistant:", "step by step.", "```python\n"))


def test_code_task_loads_offline_and_seeds_pick_subsets():
    t = get_task("code")
    every = t.load()
    assert len(every) >= 20 and len({e.id for e in every}) == len(every)
    a, b, c = t.load(5, seed=0), t.load(5, seed=0), t.load(5, seed=1)
    assert [e.id for e in a] == [e.id for e in b]
    assert [e.id for e in a] != [e.id for e in c]
    for e in a:  # Example carries both prompt forms, equal to what build_prompt makes
        assert e.prompt == t.build_prompt(e, chat=False)
        assert e.messages == t.build_prompt(e, chat=True)
        assert e.reference is None
    assert len(t.load(1000)) == len(every)
    with pytest.raises(DataError):
        t.load(0)


DING_SAMPLE = """\
# Version :: devel test
Haus {n} | Häuser {pl} | Das Haus ist sehr alt. :: house | houses | The house is very old.
Wetter {n} | Wie wird das Wetter morgen? :: weather | What will the weather be like tomorrow?
Zug {m} | Der Zug hat Verspätung. | Er nahm den Zug. :: train | The train is late.
Spiel {n} [sport] | Das Spiel (im Stadion) war toll. :: game | The game (at the stadium) was great.
Ende {n} | Das ist noch nicht das Ende.; Es geht weiter. :: end | This is not the end yet.; It goes on.
Gut {n} | Das Haus ist sehr alt. :: estate | The house is very old indeed.
kurz {adj} | Ja. :: short | Yes.
"""


def test_parse_ding_keeps_only_plain_aligned_sentences():
    pairs = sources.parse_ding(DING_SAMPLE)
    assert pairs == [
        ("Das Haus ist sehr alt.", "The house is very old."),          # first occurrence only
        ("Wie wird das Wetter morgen?", "What will the weather be like tomorrow?"),
    ]   # Zug: parts misaligned; Spiel: (gloss); Ende: "; " alternatives; kurz: too short


def test_postprocess_takes_the_answer_line():
    assert get_task("deen").postprocess('\nEnglish: "The train is late."\nNote: ...') == "The train is late."
    assert get_task("xsum").postprocess("Summary: A council closes a library.\n\nMore text") == \
        "A council closes a library."
    s = get_task("deen").metric(["English: the cat is on the mat today"], ["the cat is on the mat today"])
    assert s["bleu"] == pytest.approx(100.0)


# --- the cache ---------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeFetch:
    def __init__(self, data: bytes):
        self.data, self.calls = data, 0

    def __call__(self, dest):
        self.calls += 1
        dest.write_bytes(self.data)


def test_cache_fetches_once_then_reuses(tmp_path):
    good = b"pairs of sentences\n"
    fetch = FakeFetch(good)
    p1 = cache.cached_file("d.txt", _sha(good), fetch, root=tmp_path)
    p2 = cache.cached_file("d.txt", _sha(good), fetch, root=tmp_path)
    assert p1 == p2 == tmp_path / "d.txt" and p1.read_bytes() == good
    assert fetch.calls == 1


def test_corrupt_cached_file_is_detected_and_refetched(tmp_path):
    good = b"the real content\n"
    fetch = FakeFetch(good)
    path = cache.cached_file("d.txt", _sha(good), fetch, root=tmp_path)
    path.write_bytes(b"the real cont")          # truncated on disk
    with pytest.warns(UserWarning, match="sha256"):
        again = cache.cached_file("d.txt", _sha(good), fetch, root=tmp_path)
    assert again.read_bytes() == good and fetch.calls == 2


def test_wrong_fetch_is_an_error_and_leaves_nothing(tmp_path):
    fetch = FakeFetch(b"something else")
    with pytest.raises(DataError, match="sha256"):
        cache.cached_file("d.txt", _sha(b"expected"), fetch, root=tmp_path)
    assert list(tmp_path.iterdir()) == []

    def broken(dest):
        dest.write_bytes(b"half")
        raise OSError("network down")

    with pytest.raises(OSError):
        cache.cached_file("d.txt", _sha(b"expected"), broken, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_data_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    assert cache.data_dir() == tmp_path / "data"
    monkeypatch.delenv("BIGLITTLE_CACHE")
    assert cache.data_dir().parts[-3:] == (".cache", "biglittle", "data")


def test_ding_fetch_copies_an_installed_file_with_the_pinned_hash(tmp_path, monkeypatch):
    installed = tmp_path / "de-en"
    installed.write_text(DING_SAMPLE, encoding="utf-8")
    monkeypatch.setattr(sources, "DING_SHA256", _sha(installed.read_bytes()))
    dest = tmp_path / "copy"
    sources.fetch_ding(dest, installed=str(installed))
    assert dest.read_bytes() == installed.read_bytes()


def test_failing_tool_reports_its_output(tmp_path):
    with pytest.raises(DataError, match="not available"):
        cache.run_tool(["no-such-tool-biglittle"], "fetching x")
    with pytest.raises(DataError, match="exit 3"):
        cache.run_tool(["sh", "-c", "echo boom >&2; exit 3"], "fetching x")


# --- slow: the real data -----------------------------------------------------------------------


@pytest.mark.slow
def test_xsum_real():
    t = get_task("xsum")
    ex = t.load()
    assert len(ex) == 1001
    assert len({e.id for e in ex}) == 1001
    assert all(e.source and e.reference and "\n" not in e.reference for e in ex)
    # one-sentence summaries: far shorter than their articles (one article in the set is shorter)
    assert sum(len(e.reference) < len(e.source) / 3 for e in ex) > 950
    refs = [e.reference for e in ex[:50]]
    assert t.metric(refs, refs)["rougeL"] == pytest.approx(100.0)
    assert [e.id for e in t.load(10, seed=3)] == [e.id for e in t.load(10, seed=3)]


@pytest.mark.slow
def test_mtbench_real():
    ex = get_task("mtbench").load()
    assert len(ex) == 80
    assert {e.meta["category"] for e in ex} == {"writing", "roleplay", "reasoning", "math", "coding",
                                                "extraction", "stem", "humanities"}
    assert all(e.reference is None and e.source and e.messages[0]["content"] == e.source for e in ex)


@pytest.mark.slow
def test_deen_real():
    t = get_task("deen")
    ex = t.load()
    assert len(ex) > 5000                                   # thousands of sentence pairs
    assert len({e.source for e in ex}) == len(ex)
    assert all(e.reference and e.source[-1] in ".?!" and e.reference[-1] in ".?!" for e in ex)
    sample = t.load(200, seed=0)
    refs = [e.reference for e in sample]
    assert t.metric(refs, refs)["bleu"] == pytest.approx(100.0)


@pytest.mark.slow
def test_gsm_real():
    t = get_task("gsm")
    ex = t.load(12, seed=7)
    assert len(ex) == 12 and len({e.source for e in ex}) == 12
    assert [e.source for e in t.load(12, seed=7)] == [e.source for e in ex]
    assert [e.source for e in t.load(12, seed=8)] != [e.source for e in ex]
    for e in ex:
        assert math.isfinite(float(metrics.extract_number(e.reference)))
    # an output that ends with the reference scores 100; a wrong number scores 0
    refs = [e.reference for e in ex]
    assert t.metric([f"Reasoning...\nThe answer is {r}." for r in refs], refs)["accuracy"] == 100.0
    assert t.metric([f"The answer is {float(r) + 1}." for r in refs], refs)["accuracy"] == 0.0


def test_repetition_rate_by_hand():
    assert metrics.repetition_rate([1, 2, 3, 4, 5], n=2) == 0.0
    # bigrams: (1,2) (2,1) (1,2) (2,1) (1,2) → the last three were seen before
    assert metrics.repetition_rate([1, 2, 1, 2, 1, 2], n=2) == pytest.approx(3 / 5)
    assert metrics.repetition_rate([7, 7, 7], n=4) == 0.0  # too short for one 4-gram


def test_distinct_n_by_hand():
    assert metrics.distinct_n([[1, 2, 3], [1, 2]], n=1) == pytest.approx(3 / 5)
    assert metrics.distinct_n([[1, 2, 3], [1, 2]], n=2) == pytest.approx(2 / 3)  # (1,2) (2,3) (1,2)
    assert metrics.distinct_n([[1]], n=2) == 0.0
