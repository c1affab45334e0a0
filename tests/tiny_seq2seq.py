"""Tiny random encoder–decoder models (T5, Marian) for fast, exact tests (fp32, seeded, no downloads).

`make_seq2seq(path, arch=...)` writes a transformers model folder; `make_seq2seq_draft_of` writes
a "small" model that agrees with it often (the same weights plus noise). With `tokenizer=True`
the folder gets a byte-level tokenizer whose ids 0..2 are <pad> (the decoder start), </s> and
<unk>, and bytes are 3..258; `encode` closes the source with </s> as T5's tokenizer does.
"""
from __future__ import annotations

import torch

from tiny import byte_to_char

PAD, EOS, UNK = 0, 1, 2
SPECIALS = ["<pad>", "</s>", "<unk>"]
TOKENIZER_VOCAB = len(SPECIALS) + 256


def make_seq2seq_tokenizer(path: str) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({c: len(SPECIALS) + b for b, c in byte_to_char().items()})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)


def _config(arch: str, vocab: int, hidden: int, layers: int, eos_token_id: int | None):
    import transformers

    if arch == "t5":
        return transformers.T5Config(
            vocab_size=vocab, d_model=hidden, d_kv=hidden // 4, d_ff=hidden * 2, num_layers=layers,
            num_decoder_layers=layers, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
            tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=eos_token_id, decoder_start_token_id=PAD)
    if arch == "marian":
        return transformers.MarianConfig(
            vocab_size=vocab, d_model=hidden, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=hidden * 2,
            decoder_ffn_dim=hidden * 2, max_position_embeddings=256, dropout=0.0, attention_dropout=0.0,
            activation_dropout=0.0, tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=eos_token_id,
            decoder_start_token_id=PAD, forced_eos_token_id=None, bos_token_id=None)
    raise ValueError(f"unknown arch {arch!r}")


def make_seq2seq(path: str, arch: str = "t5", layers: int = 2, hidden: int = 64, vocab: int = 64,
                 seed: int = 0, sharpen: float = 5.0, tokenizer: bool = False,
                 eos_token_id: int | None = None) -> str:
    """Write a seeded random encoder–decoder model to `path`; `sharpen` scales the output head (T5:
    the decoder layers' writes, see `_mix_context_in`) so the distributions mix confident and
    unsure steps. A tokenizer needs vocab ≥ 259."""
    from transformers import AutoModelForSeq2SeqLM

    if tokenizer:
        vocab = max(vocab, TOKENIZER_VOCAB)
    torch.manual_seed(seed)
    net = AutoModelForSeq2SeqLM.from_config(_config(arch, vocab, hidden, layers, eos_token_id)).float().eval()
    with torch.no_grad():
        if arch == "t5":
            _mix_context_in(net, sharpen)
        else:
            net.get_output_embeddings().weight.mul_(sharpen)
    net.generation_config.eos_token_id = eos_token_id
    net.save_pretrained(path)
    if tokenizer:
        make_seq2seq_tokenizer(path)
    return path


def _mix_context_in(net, scale: float) -> None:
    """T5 ties its output head to the input embedding, so a random T5 mostly copies its last input
    token; scaling up what the decoder layers write to the residual stream makes the next token
    depend on the context (and sharpens the distributions) instead."""
    for name, p in net.decoder.named_parameters():
        if name.endswith(("SelfAttention.v.weight", "SelfAttention.o.weight", "wi.weight", "wo.weight")):
            p.mul_(scale)


def make_seq2seq_draft_of(big_path: str, path: str, noise: float = 0.2, seed: int = 0,
                          tokenizer: bool = False) -> str:
    """A small model that agrees with the big one often but not always: its weights plus noise."""
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    net = AutoModelForSeq2SeqLM.from_pretrained(big_path, dtype=torch.float32)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    net.save_pretrained(path)
    if tokenizer:
        make_seq2seq_tokenizer(path)
    return path


@torch.no_grad()
def naive_logprobs(net, source: list[int], decoder_ids: list[int]) -> torch.Tensor:
    """Log-probs [len(decoder_ids), vocab] from one full forward pass, no cache: the reference."""
    out = net(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([decoder_ids]), use_cache=False)
    return torch.log_softmax(out.logits[0].float(), dim=-1)
