"""Request bodies (pydantic): completions, chat, score and tokenize, and the "biglittle" field."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from .errors import ApiError


class Overrides(BaseModel):
    """The extra "biglittle" field: a policy and its parameters, and what to return."""
    model_config = ConfigDict(extra="allow")
    policy: str | None = None
    return_origins: bool = False


MAX_STOP = 4  # OpenAI's limit on stop strings
DEFAULT_MAX_TOKENS = 128

# OpenAI fields this server does not do: refused with 400 naming the field, never silently ignored.
# Each maps to the values that mean "not used" (for which the field is accepted).
REFUSED = {"tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
           "logit_bias": (None, {}), "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
           "best_of": (None, 1), "echo": (None, False), "suffix": (None, ""), "n": (None, 1)}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields are ignored, except those in REFUSED
    model: str
    prompt: str | list[int] | list[str]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = Field(default=None, max_length=MAX_STOP)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict | None = None
    logprobs: int | None = None  # completions: how many top alternatives per token (0 = the token's own only)
    biglittle: Overrides = Field(default_factory=Overrides)

    def refuse_unsupported(self) -> None:
        """400 naming the first field asked for that this server does not do."""
        extra = self.model_extra or {}
        for name, unused in REFUSED.items():
            if extra.get(name) not in unused:
                raise ApiError(400, f"{name}={extra[name]!r} is not supported by this server", param=name)
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ApiError(400, "only response_format {\"type\": \"text\"} is supported", param="response_format")

    def logprobs_wanted(self) -> int | None:
        """How many alternatives per token the request wants with its log-probs; None for none.
        Checked against --max-logprobs by the route."""
        if "top_logprobs" in (self.model_extra or {}) and self.model_extra["top_logprobs"] is not None:
            raise ApiError(400, "top_logprobs is a chat field; completions take logprobs=N (the number of "
                           "alternatives)", param="top_logprobs")
        if self.logprobs is not None and self.logprobs < 0:
            raise ApiError(400, "logprobs must be ≥ 0", param="logprobs")
        return self.logprobs

    def token_budget(self) -> int:
        """max_completion_tokens (OpenAI's newer name) or max_tokens, checked."""
        given = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        param = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
        n = DEFAULT_MAX_TOKENS if given is None else given
        if n < 1:
            raise ApiError(400, f"{param} must be ≥ 1", param=param)
        return n

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ScoreBody(BaseModel):
    model: str
    token_ids: list[StrictInt]
    start: int = 0
    top_k: int = Field(default=20, ge=1)


class TokenizeBody(BaseModel):
    model: str
    text: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    """A chat message; content is a string or OpenAI's list of parts (text parts only)."""
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart]

    def as_text(self) -> dict:
        if isinstance(self.content, str):
            return {"role": self.role, "content": self.content}
        if any(part.type != "text" or part.text is None for part in self.content):
            raise ApiError(400, "only text content parts are supported", param="messages")
        return {"role": self.role, "content": "".join(part.text for part in self.content)}


class ChatBody(CompletionBody):
    prompt: Any = None
    messages: list[Message]
    logprobs: bool | None = None     # chat: return each token's log-prob ...
    top_logprobs: int | None = None  # ... with this many alternatives (needs logprobs=true)

    def logprobs_wanted(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
        if self.top_logprobs is not None and self.top_logprobs < 0:
            raise ApiError(400, "top_logprobs must be ≥ 0", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None
