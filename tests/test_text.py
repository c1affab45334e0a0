"""Text in, text out: tokenizers, chat templates, stop strings and streaming."""
import copy
from collections import Counter

import pytest

import biglittle as bl
from biglittle.decoding.text import LEFT_CONTEXT, TextTracker
from biglittle.models.hf import HFTokenizer
from tiny import byte_to_char

N = 40


def test_text_prompt_gives_text(text_pair):
    small, big = text_pair
    r = bl.generate(small, big, "Hello", policy=bl.BiLD(), max_new_tokens=N)
    assert isinstance(r.text, str)
    assert r.text == big.tokenizer.decode(r.token_ids)
    assert r.prompt_ids == big.tokenizer.encode("Hello")


def test_string_and_token_prompts_agree(text_pair):
    small, big = text_pair
    a = bl.generate(small, big, "Hello", policy=bl.Speculative(), max_new_tokens=N)
    b = bl.generate(small, big, big.tokenizer.encode("Hello"), policy=bl.Speculative(), max_new_tokens=N)
    assert a.token_ids == b.token_ids


def test_chat_applies_the_template(text_pair):
    small, big = text_pair
    r = bl.generate(small, big, "hi", policy=bl.BigOnly(), max_new_tokens=4, chat=True)
    assert big.tokenizer.decode(r.prompt_ids) == "<user>hi\n<assistant>"
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    r = bl.generate(small, big, msgs, policy=bl.BigOnly(), max_new_tokens=4, chat=True)
    assert big.tokenizer.decode(r.prompt_ids) == "<system>be brief\n<user>hi\n<assistant>"


@pytest.mark.parametrize("policy", [bl.BigOnly(), bl.SmallOnly(), bl.Speculative(draft=3), bl.BiLD()],
                         ids=lambda p: p.name)
def test_stream_chunks_add_up_to_the_result(text_pair, policy):
    small, big = text_pair
    chunks = list(bl.stream(small, big, "Hello", policy=policy, max_new_tokens=N))
    final = chunks[-1].final
    assert final is not None and all(c.final is None for c in chunks[:-1])
    assert sum((c.token_ids for c in chunks), []) == final.token_ids
    assert sum((c.origins for c in chunks), []) == final.origins
    assert "".join(c.text for c in chunks) == final.text


def test_stream_equals_generate(text_pair):
    small, big = text_pair
    r = bl.generate(small, big, "Hello", policy=bl.BiLD(), max_new_tokens=N)
    chunks = list(bl.stream(small, big, "Hello", policy=bl.BiLD(), max_new_tokens=N))
    assert chunks[-1].final.token_ids == r.token_ids


def _some_stop(text_pair, policy):
    """A stop string taken from the middle of the policy's unconstrained output."""
    small, big = text_pair
    full = bl.generate(small, big, "Hello", policy=policy, max_new_tokens=N)
    text = full.text
    stop = next(text[i:i + 2] for i in range(5, len(text) - 2) if "\ufffd" not in text[i:i + 2])
    return full, stop


@pytest.mark.parametrize("policy", [bl.BigOnly(), bl.Speculative(draft=4), bl.BiLD()], ids=lambda p: p.name)
def test_stop_string_cuts_text_and_tokens(text_pair, policy):
    small, big = text_pair
    full, stop = _some_stop(text_pair, policy)
    cut = full.text.index(stop)
    chunks = list(bl.stream(small, big, "Hello", policy=policy, max_new_tokens=N, stop=[stop, "\x00never"]))
    r = chunks[-1].final
    assert r.text == full.text[:cut]
    assert r.stats.finish_reason == "stop"
    assert stop in big.tokenizer.decode(r.token_ids)            # the tokens reach the stop string…
    assert stop not in big.tokenizer.decode(r.token_ids[:-1])   # …and end at the token completing it
    assert "".join(c.text for c in chunks) == r.text            # nothing past the cut was streamed
    assert len(r.origins) == len(r.token_ids) == r.stats.new_tokens


def test_closing_the_stream_stops_generation(text_pair):
    small, big = text_pair
    it = bl.stream(small, big, "Hello", policy=bl.BigOnly(), max_new_tokens=N)
    first = next(it)
    it.close()
    assert len(first.token_ids) == 1


# ------------------------------------------------ incremental detokenizing

def cleanup_tokenizer(byte_of=None) -> HFTokenizer:
    """A real byte-level tokenizer (one token per byte) whose decode cleans up spaces
    (" ," → ",", " n't" → "n't"): a later token rewrites text that came before it.
    byte_of[i] is the byte token i stands for (default: byte i)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_of = list(range(256)) if byte_of is None else byte_of
    chars = byte_to_char()
    tok = Tokenizer(models.BPE(vocab={chars[byte_of[i]]: i for i in range(256)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    # transformers 5 cleans up a BPE tokenizer's spaces only when told so explicitly
    return HFTokenizer(PreTrainedTokenizerFast(
        tokenizer_object=tok, clean_up_tokenization_spaces=True,
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True))


def with_tokenizer(text_pair, tokenizer):
    """The tiny pair, same weights, reading and writing text through `tokenizer`."""
    pair = [copy.copy(m) for m in text_pair]
    for m in pair:
        m.tokenizer = tokenizer
    return pair


def feed(tokenizer, ids, sizes, stops=()):
    tracker = TextTracker(tokenizer, list(stops))
    deltas, i = [], 0
    for n in sizes:
        deltas.append(tracker.add(ids[i:i + n])[1])
        i += n
        if tracker.stopped:
            break
    deltas.append(tracker.flush())
    return tracker, deltas


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_a_decode_that_rewrites_earlier_text_is_streamed_whole(size):
    tok = cleanup_tokenizer()
    ids = tok.encode("Hello , world . Yes ! Grüße , 你好 🙂 ?")
    assert tok.decode(ids) == "Hello, world. Yes! Grüße, 你好 🙂?"
    tracker, deltas = feed(tok, ids, [size] * len(ids))
    assert "".join(deltas) == tracker.text == tok.decode(ids)  # a trailing space waits for the next token
    assert not any("\ufffd" in d for d in deltas)  # a character split over byte tokens waits for its end


def test_a_rewrite_of_text_already_streamed_keeps_that_text():
    """" n't" → "n't" comes three tokens after the space, which has been streamed by then:
    the stream and the result keep it, and nothing else differs from a whole decode."""
    tok = cleanup_tokenizer()
    ids = tok.encode("I do n't know !")
    tracker, deltas = feed(tok, ids, [1] * len(ids))
    assert "".join(deltas) == tracker.text == "I do n't know!"
    assert tok.decode(ids) == "I don't know!"


def test_an_incomplete_character_at_the_end_is_flushed():
    tok = cleanup_tokenizer()
    ids = tok.encode("ok 你")[:-1]  # the last character cut mid-way
    tracker, deltas = feed(tok, ids, [1] * len(ids))
    assert deltas[-1] == " \ufffd" and "".join(deltas) == tracker.text == tok.decode(ids)


def test_stop_string_made_by_a_rewrite():
    tok = cleanup_tokenizer()
    ids = tok.encode("so , yes")
    tracker, deltas = feed(tok, ids, [1] * len(ids), stops=["so,"])
    assert tracker.stopped and tracker.text == "" and "".join(deltas) == ""


def test_stream_adds_up_with_a_tokenizer_that_rewrites_earlier_text(text_pair):
    """Greedy big-only output of the tiny pair, read through a tokenizer that maps its most
    common pair of consecutive tokens to " ,", which the decode cleans up to "," — before
    incremental detokenizing, the stream stopped at the first such rewrite."""
    small, big = text_pair
    plain = bl.generate(small, big, "Hello", policy=bl.BigOnly(), max_new_tokens=N)
    prompt = plain.prompt_ids
    (a, b), _ = Counter(p for p in zip(plain.token_ids, plain.token_ids[1:]) if p[0] != p[1]).most_common(1)[0]
    byte_of = list(range(256))
    for token, byte in ((a, ord(" ")), (b, ord(","))):
        j = byte_of.index(byte)
        byte_of[token], byte_of[j] = byte, byte_of[token]
    tok = cleanup_tokenizer(byte_of)
    small, big = with_tokenizer(text_pair, tok)
    for policy in (bl.BigOnly(), bl.Speculative(draft=3), bl.BiLD(rollback=0.0)):  # all = big greedy
        chunks = list(bl.stream(small, big, prompt, policy=policy, max_new_tokens=N))
        r = chunks[-1].final
        assert r.token_ids == plain.token_ids
        assert "".join(c.text for c in chunks) == r.text == tok.decode(r.token_ids)
        assert "," in r.text and " ," not in r.text  # the rewrite happened, and is in the text


class CountingTokenizer:
    """A real tokenizer that counts the tokens it is asked to decode."""

    def __init__(self, tok):
        self.tok, self.decoded = tok, 0

    def encode(self, text):
        return self.tok.encode(text)

    def apply_chat(self, messages):
        return self.tok.apply_chat(messages)

    def decode(self, ids, skip_special=True):
        self.decoded += len(ids)
        return self.tok.decode(ids, skip_special)


@pytest.mark.parametrize("stop", [None, ["\x00never"]])
@pytest.mark.parametrize("policy", [bl.BigOnly(), bl.BiLD()], ids=lambda p: p.name)
def test_decode_work_per_commit_does_not_grow_with_the_answer(text_pair, policy, stop):
    tok = CountingTokenizer(text_pair[1].tokenizer)
    small, big = with_tokenizer(text_pair, tok)
    chunks, work = [], []
    for chunk in bl.stream(small, big, "Hello", policy=policy, max_new_tokens=300, stop=stop):
        chunks.append(chunk)
        work.append(tok.decoded)  # what committing this chunk decoded
        tok.decoded = 0
    assert len(chunks[-1].final.token_ids) == 300
    for chunk, n in zip(chunks, work):  # left context and the new tokens, each decoded twice at most
        assert n <= 2 * (LEFT_CONTEXT + 1) * max(1, len(chunk.token_ids))
    assert "".join(c.text for c in chunks) == chunks[-1].final.text == big.tokenizer.decode(chunks[-1].final.token_ids)
