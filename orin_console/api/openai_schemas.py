"""The request bodies of the OpenAI-compatible routes, and what the engine gets from them.

Strict types (``"5"`` is not 5, ``true`` not 1); unknown fields are a 400 naming them. The
fields the engine does not offer are accepted only with their neutral value
(:func:`_refuse_unsupported`); the others become the engine's keyword arguments
(:func:`_options`), the messages its chat messages (:func:`_messages`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from orin_console.api.openai_errors import OpenAIError

SOURCE = "api"
AUTO = "auto"


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage and no choices."""

    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool | None = None


Number = StrictFloat | StrictInt


class _Sampling(BaseModel):
    """What both generation routes take (strict types: ``"5"`` is not 5, ``true`` not 1)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(description="A catalog id (that model answers) or `auto` (selected for "
                             "the task).", examples=["auto"])
    max_tokens: StrictInt | None = Field(None, description="Most tokens to generate (default 256; "
                                         "at most the model's context).", examples=[64])
    temperature: Number | None = Field(None, description="0 (greedy) to 2.", examples=[0.7])
    top_p: Number | None = Field(None, description="Nucleus mass, > 0 and <= 1.")
    stop: StrictStr | list[StrictStr] | None = Field(None, description="Up to 4 strings of 1 to 64 "
                                                     "characters that end the answer.")
    seed: StrictInt | None = Field(None, description="0 to 4294967294 for reproducible sampling.")
    n: StrictInt | None = Field(None, description="Only 1.")
    stream: StrictBool | None = Field(None, description="Server-sent chunks as OpenAI sends them, "
                                      "ending with `data: [DONE]`.")
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(None, description="Accepted and ignored.")
    # accepted with their neutral value only
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: dict[str, Any] | None = None
    logprobs: Any = None
    top_logprobs: Any = None


class ChatMessage(_Open):
    """One message: a role and its text (a string, or text parts)."""

    role: Any = Field(description="system, developer (as system), user or assistant.")
    content: Any = Field(None, description="A string, or a list of `{\"type\": \"text\", \"text\": ...}` parts.")


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "auto", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}]})

    messages: list[ChatMessage] = Field(description="Oldest first; at least one user message.")
    max_completion_tokens: StrictInt | None = Field(None, description="The newer name of `max_tokens`.")
    response_format: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: StrictBool | None = None
    store: StrictBool | None = None
    metadata: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "auto", "prompt": "The future of AI is", "max_tokens": 32}]})

    prompt: StrictStr | list[StrictStr] = Field(description="The text to continue (as it is: no chat "
                                                "template); a list of exactly one string is accepted.")
    echo: StrictBool | None = None
    best_of: StrictInt | None = None
    suffix: StrictStr | None = None


def _refuse_unsupported(body: _Sampling) -> None:
    """Fields the engine does not offer, accepted only with the value that means "off"."""
    if body.n not in (None, 1):
        raise OpenAIError(400, f"Invalid value for 'n': {body.n}; only n = 1 is supported (one "
                          "answer per request).", param="n", code="invalid_value")
    neutral: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("presence_penalty", body.presence_penalty, (None, 0)),
        ("frequency_penalty", body.frequency_penalty, (None, 0)),
        ("logprobs", body.logprobs, (None, False, 0)),
        ("top_logprobs", body.top_logprobs, (None, 0)),
    ]
    if body.logit_bias:
        neutral.append(("logit_bias", body.logit_bias, ({},)))
    if isinstance(body, ChatCompletionRequest):
        neutral += [("tools", body.tools, (None, [])), ("functions", body.functions, (None, [])),
                    ("tool_choice", body.tool_choice, (None, "none")),
                    ("function_call", body.function_call, (None, "none"))]
        fmt = body.response_format
        if fmt is not None and fmt.get("type") != "text":
            neutral.append(("response_format", fmt, ({"type": "text"},)))
    if isinstance(body, CompletionRequest):
        neutral += [("echo", body.echo, (None, False)), ("best_of", body.best_of, (None, 1)),
                    ("suffix", body.suffix, (None, ""))]
    for name, value, allowed in neutral:
        if not _neutral(value, allowed):
            raise OpenAIError(400, f"'{name}' is not supported by this server (leave it out).",
                              param=name, code="unsupported_parameter")


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value`` is one of ``allowed`` (``false`` is not 0, 0.0 is 0)."""
    for ok in allowed:
        if value is ok:
            return True
        if not isinstance(value, bool) and not isinstance(ok, bool) and value == ok:
            return True
    return False


def _options(body: _Sampling, max_tokens: int | None) -> dict[str, Any]:
    """The engine's keyword arguments (None values leave the engine's defaults)."""
    options: dict[str, Any] = {"source": SOURCE, "max_tokens": max_tokens, "temperature": body.temperature,
                               "top_p": body.top_p, "seed": body.seed}
    if body.stop is not None:
        options["stop"] = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)
    if body.model == AUTO:
        options["mode"] = "auto"
    else:
        options.update(mode="manual", model=body.model)
    return {k: v for k, v in options.items() if v is not None}


def _check_model(core: Any, model: str) -> None:
    if model != AUTO and model not in core.manager.catalog:
        known = ", ".join([AUTO, *(entry.id for entry in core.manager.catalog)])
        raise OpenAIError(404, f"The model `{model[:80]}` does not exist (known: {known}).",
                          param="model", code="model_not_found")


def _text_of(i: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise OpenAIError(400, f"Invalid content part messages[{i}].content[{j}]: only text parts "
                                  "(`{\"type\": \"text\", \"text\": ...}`) are supported.",
                                  param=f"messages[{i}].content", code="invalid_value")
            texts.append(part["text"])
        return "".join(texts)
    raise OpenAIError(400, f"Invalid value for 'messages[{i}].content': must be a string or a list of "
                      "text parts.", param=f"messages[{i}].content", code="invalid_value")


def _messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(body.messages):
        role = "system" if message.role == "developer" else message.role
        out.append({"role": role, "content": _text_of(i, message.content)})  # the engine checks roles
    return out


def _max_tokens(body: _Sampling) -> tuple[int | None, dict[str, str]]:
    """The token limit and, when it came as ``max_completion_tokens``, the name to report."""
    newer = getattr(body, "max_completion_tokens", None)
    if newer is not None and body.max_tokens is not None and newer != body.max_tokens:
        raise OpenAIError(400, "max_tokens and max_completion_tokens differ: give one of them.",
                          param="max_tokens", code="invalid_value")
    if newer is not None:
        return newer, {"max_tokens": "max_completion_tokens"}
    return body.max_tokens, {}
