"""Text in, text out: tokenizers, chat templates, stop strings and streaming."""
import pytest

import biglittle as bl

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
