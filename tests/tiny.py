"""Tiny random Llama-style models for fast, exact tests (fp32, seeded, no downloads).

`make_model(path, ...)` writes a transformers model folder; with `tokenizer=True` it also writes
a byte-level tokenizer (256 tokens, one per byte, no merges) with a chat template, so text
prompts, stop strings and chat work too.
"""
from __future__ import annotations

import torch

from biglittle.models.hf import gpt2_byte_chars

# GPT-2's printable stand-in character for each byte (the library's own table)
byte_to_char = gpt2_byte_chars

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def make_tokenizer(path: str, permute: bool = False) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = byte_to_char()
    vocab = {chars[b]: (255 - b if permute else b) for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)


def make_model(path: str, layers: int = 2, hidden: int = 64, vocab: int = 256, seed: int = 0,
               sharpen: float = 5.0, tokenizer: bool = False, permute_tokenizer: bool = False,
               eos_token_id: int | None = None, context: int = 512) -> str:
    """Write a seeded random Llama model to `path`; `sharpen` scales the output head so the
    distributions are peaked enough to be interesting (a mix of confident and unsure steps)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=context, tie_word_embeddings=False,
                      bos_token_id=None, eos_token_id=eos_token_id, pad_token_id=None)
    net = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        net.lm_head.weight.mul_(sharpen)
    net.generation_config.eos_token_id = eos_token_id
    net.save_pretrained(path)
    if tokenizer:
        make_tokenizer(path, permute=permute_tokenizer)
    return path


@torch.no_grad()
def naive_greedy(path_or_net, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation recomputing the whole sequence each step (no cache): the reference."""
    net = _net(path_or_net)
    seq = list(prompt)
    for _ in range(n):
        logits = net(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]
        seq.append(int(logits.argmax()))
    return seq[len(prompt):]


@torch.no_grad()
def next_token_probs(path_or_net, seq: list[int], temperature: float = 1.0) -> torch.Tensor:
    net = _net(path_or_net)
    logits = net(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
    return torch.softmax(torch.log_softmax(logits, -1) / temperature, -1)


_NETS: dict[str, object] = {}


def _net(path_or_net):
    if not isinstance(path_or_net, str):
        return path_or_net
    if path_or_net not in _NETS:
        from transformers import AutoModelForCausalLM
        _NETS[path_or_net] = AutoModelForCausalLM.from_pretrained(path_or_net, dtype=torch.float32).eval()
    return _NETS[path_or_net]


def make_draft_of(big_path: str, path: str, keep_layers: int = 1, noise: float = 0.0, seed: int = 0,
                  tokenizer: bool = False) -> str:
    """A small model that agrees with the big one often but not always: the big model's first
    `keep_layers` layers with its embeddings and head (as in layer-skipping self-speculation),
    plus optional weight noise."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_pretrained(big_path, dtype=torch.float32)
    net.model.layers = net.model.layers[:keep_layers]
    net.config.num_hidden_layers = keep_layers
    if noise:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(noise * p.std() * torch.randn_like(p))
    net.save_pretrained(path)
    if tokenizer:
        make_tokenizer(path)
    return path


def make_sliding_model(path: str, arch: str = "qwen2", window: int = 8, layers: int = 2, hidden: int = 64,
                       vocab: int = 256, seed: int = 0, sharpen: float = 5.0, context: int = 512) -> str:
    """Like `make_model`, with sliding-window attention of `window` positions: "qwen2" makes the
    last layer sliding and the first full (the mix Gemma-3 has), "mistral" makes every layer
    sliding, "gemma3" alternates as Gemma-3 does (sliding, then full). Writes the byte-level
    tokenizer too (without one, transformers makes up a Gemma tokenizer with an EOS)."""
    import transformers

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                  tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                  sliding_window=window)
    if arch == "qwen2":
        cfg = transformers.Qwen2Config(use_sliding_window=True, max_window_layers=layers - 1, **common)
        cls = transformers.Qwen2ForCausalLM
    elif arch == "mistral":
        cfg, cls = transformers.MistralConfig(**common), transformers.MistralForCausalLM
    elif arch == "gemma3":
        kinds = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
        cfg = transformers.Gemma3TextConfig(head_dim=hidden // 4, layer_types=kinds, **common)
        cls = transformers.Gemma3ForCausalLM
    else:
        raise ValueError(f"unknown arch {arch!r}")
    net = cls(cfg).float().eval()
    with torch.no_grad():
        net.lm_head.weight.mul_(sharpen)
    net.generation_config.eos_token_id = None
    net.save_pretrained(path)
    make_tokenizer(path)
    return path


def make_other_tokenizer_draft(source_path: str, path: str, extra_vocab: int = 0) -> str:
    """A draft model that speaks another tokenizer: `source_path`'s model (with a byte-level
    tokenizer) with its token ids permuted (byte b is id 255 − b, as `make_tokenizer(permute=True)`
    writes) and `extra_vocab` unused ids appended. In text it predicts exactly what the source
    model predicts, so drafts through a vocabulary bridge are often right; in ids it shares nothing."""
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(source_path, dtype=torch.float32)
    order = torch.arange(255, -1, -1)
    with torch.no_grad():
        emb, head = net.get_input_embeddings().weight[order].clone(), net.lm_head.weight[order].clone()
        if extra_vocab:  # unused ids: the head never prefers them
            emb = torch.cat([emb, torch.zeros(extra_vocab, emb.shape[1])])
            head = torch.cat([head, torch.zeros(extra_vocab, head.shape[1]) - 0.0])
        net.resize_token_embeddings(emb.shape[0])
        net.get_input_embeddings().weight.copy_(emb)
        net.lm_head.weight.copy_(head)
    net.config.vocab_size = emb.shape[0]
    net.save_pretrained(path)
    make_tokenizer(path, permute=True)
    return path
