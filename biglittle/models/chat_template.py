"""Chat templates (Jinja2) rendered as transformers renders them, for backends that carry a
template string but no transformers tokenizer (a GGUF's tokenizer.chat_template)."""
from __future__ import annotations


def render_chat(template: str, messages: list[dict], bos_token: str = "", eos_token: str = "") -> str:
    """Render a chat template (Jinja2, sandboxed) as transformers does, with the prompt for the
    assistant's turn at the end."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters.setdefault("tojson", lambda x, indent=None, ensure_ascii=False: __import__("json").dumps(
        x, indent=indent, ensure_ascii=ensure_ascii))
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_token, eos_token=eos_token)
