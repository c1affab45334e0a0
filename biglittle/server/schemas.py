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


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | list[int] | list[str]
    max_tokens: int | None = Field(default=128)
    temperature: float | None = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    echo: bool = False
    biglittle: Overrides = Field(default_factory=Overrides)


class ScoreBody(BaseModel):
    model: str
    token_ids: list[StrictInt]
    start: int = 0
    top_k: int = Field(default=20, ge=1, le=1000)


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
