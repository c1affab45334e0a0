"""The server dialects the remote backend speaks: how each server scores a block of token ids
(see models/remote.py for what each one can and cannot do exactly)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import RemoteError
from .remote_transport import Http, malformed


@dataclass
class Rows:
    """What a server told us about the distributions after positions start … start+n−1."""
    top: list[dict[int, float]]        # per row: top-k token id → log-prob
    given: list[float | None]          # per row: log-prob of the next given token (None: unknown/last)


class BiglittleDialect:
    name = "biglittle"

    def __init__(self, http: Http, model: str):
        self.http, self.model = http, model
        self.server_s = 0.0  # forward-pass time the server reported, summed over calls
        self._count = threading.Lock()  # threads sharing the model add to server_s

    def tokenize(self, text: str) -> list[int] | None:
        return self.http.call("POST", "/v1/tokenize", {"model": self.model, "text": text})["tokens"]

    def score(self, ids: list[int], start: int, top_k: int) -> Rows:
        resp = self.http.call("POST", "/v1/score", {"model": self.model, "token_ids": ids, "start": start,
                                                    "top_k": top_k})
        try:
            with self._count:
                self.server_s += float(resp.get("elapsed_s") or 0.0)  # the server's own forward-pass time
            rows = resp["rows"]
            return Rows([{int(t): float(lp) for t, lp in row["top"]} for row in rows],
                        [None if row.get("next_logprob") is None else float(row["next_logprob"]) for row in rows])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise malformed("rows", e) from None


class VllmDialect:
    """vLLM: token-id prompts, `prompt_logprobs=k` (the given token's log-prob plus the top-k for
    every prompt position but the first), and `logprobs=k` on one generated token for the row
    after the last token (tokens returned as ids with `return_tokens_as_token_ids`).
    vLLM (0.32) skips its prefix cache for any request with `prompt_logprobs`, so each scoring
    request recomputes the whole sequence: a big call costs a prefill of all of it."""
    name = "vllm"

    def __init__(self, http: Http, model: str):
        self.http, self.model = http, model

    def tokenize(self, text: str) -> list[int] | None:
        return self.http.call("POST", "/tokenize", {"model": self.model, "prompt": text})["tokens"]

    def score(self, ids: list[int], start: int, top_k: int) -> Rows:
        if start < 0:
            raise RemoteError("vLLM reports no distribution before the first token")
        body = {"model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "logprobs": top_k,
                "prompt_logprobs": top_k, "return_tokens_as_token_ids": True}
        resp = self.http.call("POST", "/v1/completions", body)
        try:
            choice = resp["choices"][0]
            plp = choice["prompt_logprobs"]
            top, given = [], []
            for pos in range(start, len(ids) - 1):
                entry = {int(t): float(v["logprob"]) for t, v in plp[pos + 1].items()}
                given.append(entry.get(ids[pos + 1]))
                top.append(entry)
            last = choice["logprobs"]["top_logprobs"][0]
            top.append({int(str(t).removeprefix("token_id:")): float(v) for t, v in last.items()})
            given.append(None)
            return Rows(top, given)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise malformed("prompt_logprobs", e) from None


class LlamaCppServerDialect:
    """llama-cpp-python's server. Its echo log-probs need three repairs, all checked in the tests
    against local scoring: (1) the list for position i is the distribution AFTER token i, (2) it
    also holds a spurious entry for token i itself (with that token's log-prob under the wrong
    distribution), which we drop — when that token is genuinely in the top-k too, its true value
    is lost, so that one row is asked again without echo; (3) entries are keyed by token text, so
    texts shared by several tokens (special tokens, partial UTF-8 bytes) cannot be mapped back to
    an id and are left out. Special tokens are therefore invisible: the big model cannot end a
    generation on this server, and a drafted end-of-sequence token is never accepted.

    The server takes text, not token ids, and tokenizes it canonically. When our tokens are not
    the canonical tokenization of their text (a model may emit "\n" then "    " where the tokenizer
    would write "\n    "), a position is scored on the server's tokenization of the same text: the
    big model's distribution after that text, not after our exact token history. Greedy output
    through this server therefore agrees with the local big model closely but not always exactly
    (the tests measure it); `biglittle serve` and vLLM take token ids and are exact."""
    name = "llama-cpp"

    def __init__(self, http: Http, model: str, tokenizer=None):  # a local tokenizer the server matches
        self.http, self.model, self.tokenizer = http, model, tokenizer
        self.single_rows = 0       # rows that needed a request of their own (see score)
        self.retokenized_rows = 0  # of those, rows whose text the server tokenized differently
        self._count = threading.Lock()  # threads sharing the model add to the counts

    def tokenize(self, text: str) -> list[int] | None:
        return self.http.call("POST", "/extras/tokenize", {"input": text})["tokens"]

    def _echo(self, ids: list[int], top_k: int) -> dict:
        body = {"model": self.model, "prompt": self.tokenizer.text(ids), "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": top_k}
        try:
            return self.http.call("POST", "/v1/completions", body)["choices"][0]["logprobs"]
        except (KeyError, TypeError, IndexError) as e:
            raise malformed("logprobs", e) from None

    def _ids(self, entry: dict) -> dict[int, float]:
        out = {}
        for piece, value in entry.items():
            tid = self.tokenizer.piece_id(piece)
            if tid is not None:
                out[tid] = float(value)
        return out

    def score(self, ids: list[int], start: int, top_k: int) -> Rows:
        if self.tokenizer is None:
            raise RemoteError("llama-cpp-python's server takes text prompts only: load the remote model with "
                              "tokenizer_from=<the small model> so token ids can be turned into text")
        if start < 1:
            raise RemoteError("llama-cpp-python's server gives no distribution after the first token; "
                              "use a prompt of two or more tokens")
        lp = self._echo(ids, top_k)
        try:
            pieces, tops = lp["tokens"], lp["top_logprobs"]
        except (KeyError, TypeError) as e:
            raise malformed("echo logprobs", e) from None
        same = self.tokenizer.common_prefix(ids, pieces)  # the server's tokens agree with ours up to here
        rows_top = []
        for pos in range(start, len(ids)):
            entry = dict(tops[pos] or {}) if pos < same else {}
            if len(entry) > top_k:
                entry.pop(pieces[pos], None)  # the spurious entry (repair 2)
                rows_top.append(self._ids(entry))
            else:  # re-tokenized differently, or the spurious entry hid a genuine one: ask for this row alone
                rows_top.append(self._row_alone(ids[: pos + 1], top_k))
        given = [rows_top[i].get(ids[start + i + 1]) for i in range(len(rows_top) - 1)] + [None]
        return Rows(rows_top, given)

    def _row_alone(self, prefix: list[int], top_k: int) -> dict[int, float]:
        """The distribution after the last token of prefix, from one completion without echo."""
        with self._count:
            self.single_rows += 1
        body = {"model": self.model, "prompt": self.tokenizer.text(prefix), "max_tokens": 1, "temperature": 0.0,
                "logprobs": top_k}
        resp = self.http.call("POST", "/v1/completions", body)
        try:
            entry = resp["choices"][0]["logprobs"]["top_logprobs"][0]
        except (KeyError, TypeError, IndexError) as e:
            raise malformed("logprobs", e) from None
        if resp.get("usage", {}).get("prompt_tokens") != len(prefix):
            with self._count:
                self.retokenized_rows += 1  # scored on the server's own tokenization of the same text
        return self._ids(entry)
