"""``client.inference``: quick_generate, generate, chat, batch and stream.

The server chooses the model unless ``model=`` names one. Arguments are checked before anything
is sent (:mod:`orin_console.client.checks`): a wrong type is a ``TypeError``, a value outside the
API's published bounds (``max_tokens``, ``temperature``, a lone surrogate in a prompt...) a
``ValueError``, each naming the argument. What depends on the model (its context) is the server's
to say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from orin_console.client import checks
from orin_console.client._http import Http, iter_events
from orin_console.client.errors import OrinClientError, api_error
from orin_console.client.types import BatchItem, GenerationResult, Routed, batch_item

Message = Mapping[str, str]
"""A chat message: ``{"role": "user" | "system" | "assistant", "content": "..."}``."""

Messages = str | Sequence[Message]
"""A chat: one user message as text, or a list of messages."""


def _check_prompt(prompt: Any, name: str = "prompt") -> str:
    return checks.text(name, prompt, max_chars=checks.MAX_PROMPT_CHARS)


def _messages(messages: Any) -> list[dict[str, str]]:
    """Chat messages as the API takes them (a string is one user message)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": _check_prompt(messages, "messages")}]
    if not isinstance(messages, Sequence) or isinstance(messages, bytes | bytearray):
        raise TypeError("messages must be a str or a list of {'role', 'content'} dicts, "
                        f"not {type(messages).__name__}")
    if not 1 <= len(messages) <= checks.MAX_MESSAGES:
        raise ValueError(f"messages must hold 1 to {checks.MAX_MESSAGES} messages, not {len(messages)}")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] must be a dict with 'role' and 'content', not {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise TypeError(f"messages[{i}] needs 'role' and 'content' strings")
        checks.choice(f"messages[{i}]['role']", role, checks.ROLES)
        checks.text(f"messages[{i}]['content']", content, max_chars=checks.MAX_PROMPT_CHARS, empty=True)
        out.append({"role": role, "content": content})
    return out


def _params(**given: Any) -> dict[str, Any]:
    """The generation parameters that were given (None: the server's default), checked."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name == "max_tokens":
            checks.integer(name, value, 1, checks.MAX_TOKENS_LIMIT)
        elif name == "seed":
            checks.integer(name, value, 0, checks.SEED_MAX)
        elif name == "temperature":
            checks.number(name, value, 0.0, checks.TEMPERATURE_MAX)
        elif name == "top_p":
            checks.number(name, value, 0.0, 1.0, low_open=True)
        elif name == "mode":
            checks.choice(name, value, checks.MODES)
        elif name == "model":
            checks.model_id(name, value)
        elif name == "request_id":
            checks.text(name, value)
            if not checks.REQUEST_ID.fullmatch(value):
                raise ValueError(f"request_id: {value[:80]!r} must be 1 to 80 of letters, digits, '.', '_', ':', "
                                 "'/', '-', starting with a letter or digit")
        elif name == "stop":
            value = checks.strings(name, value)
            if len(value) > checks.MAX_STOP:
                raise ValueError(f"stop holds {len(value)} strings; at most {checks.MAX_STOP}")
            for i, item in enumerate(value):
                checks.text(f"stop[{i}]", item, max_chars=checks.MAX_STOP_CHARS)
        out[name] = value
    if "model" in out and "mode" not in out:
        out["mode"] = "manual"  # naming a model means using it (the server's auto mode ignores it)
    return out


class TextStream:
    """A streamed generation: iterate it for the text as it is written.

    ``async for piece in client.inference.stream(prompt=...)`` yields each piece of text
    (``str``). :attr:`routed` is set once the server has chosen the model, :attr:`result` when
    the stream ends (the same :class:`GenerationResult` a non-streamed call returns). An
    ``error`` event is raised as the server's error (``ShuttingDown`` as a
    :class:`~orin_console.client.errors.ServerError`). Leaving the loop early closes the
    connection, which cancels the generation on the server; ``async with`` (or
    :meth:`aclose`) does it at once.
    """

    def __init__(self, http: Http, path: str, body: dict[str, Any]) -> None:
        self._http = http
        self._path = path
        self._body = body
        self._iterator: AsyncIterator[str] | None = None
        self.routed: Routed | None = None
        """Where the request went (the ``routed`` event), once it has arrived."""
        self.result: GenerationResult | None = None
        """The finished generation (the ``done`` event), once the stream has ended."""

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __anext__(self) -> str:
        return await self.__aiter__().__anext__()

    async def text(self) -> str:
        """Read the whole stream; the text."""
        return "".join([piece async for piece in self])

    async def aclose(self) -> None:
        """Stop reading and close the connection (the server cancels the generation)."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> TextStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[str]:
        async with self._http.sse("POST", self._path, json_body=self._body) as source:
            async for name, data in iter_events(source, self._path, self._http):
                if name == "token":
                    text = data.get("text") if isinstance(data, Mapping) else None
                    if text:
                        yield str(text)
                elif name == "routed" and isinstance(data, Mapping):
                    self.routed = Routed.from_dict(data)
                elif name == "done" and isinstance(data, Mapping):
                    self.result = GenerationResult.from_dict(data)
                    return
                elif name == "error":
                    raise api_error(None, data, fallback=f"the stream of {self._path} failed")
        if self.result is None:
            raise OrinClientError(f"the stream of {self._http.url(self._path)} ended without a done event "
                                  "(the server stopped mid-answer)")


class InferenceAPI:
    """Generation: ``client.inference``."""

    def __init__(self, http: Http) -> None:
        self._http = http

    async def quick_generate(self, prompt: str, *, max_tokens: int | None = None, temperature: float | None = None,
                             mode: str | None = None, model: str | None = None) -> GenerationResult:
        """The seed's one-call generation (``POST /quick/generate``): the server picks the model
        for ``prompt`` unless ``model`` names one."""
        body = {"prompt": _check_prompt(prompt),
                **_params(max_tokens=max_tokens, temperature=temperature, mode=mode, model=model)}
        return GenerationResult.from_dict(await self._http.request("POST", "/quick/generate", json_body=body))

    async def generate(self, prompt: str, *, max_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, seed: int | None = None, stop: str | Sequence[str] | None = None,
                       mode: str | None = None, model: str | None = None,
                       request_id: str | None = None) -> GenerationResult:
        """A completion of ``prompt`` with every generation parameter (``POST /generate``).

        Args:
            prompt: the text to continue.
            max_tokens: the most tokens to write.
            temperature: sampling temperature (0: greedy).
            top_p: nucleus sampling.
            seed: the sampler's seed, for repeatable answers.
            stop: a string, or strings, that end the answer.
            mode: ``auto`` (the server picks), ``manual`` (use ``model``) or ``hybrid`` (prefer
                ``model`` when it is loaded and fits). Default: ``manual`` when ``model`` is
                given, else ``auto``.
            model: a catalog id.
            request_id: your id for the request (its events on ``/events`` carry it).
        """
        body = {"prompt": _check_prompt(prompt),
                **_params(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                          mode=mode, model=model, request_id=request_id)}
        return GenerationResult.from_dict(await self._http.request("POST", "/generate", json_body=body))

    async def chat(self, messages: Messages, *, max_tokens: int | None = None, temperature: float | None = None,
                   top_p: float | None = None, seed: int | None = None, stop: str | Sequence[str] | None = None,
                   mode: str | None = None, model: str | None = None,
                   request_id: str | None = None) -> GenerationResult:
        """A chat answer (``POST /chat``): ``messages`` is one user message as text, or a list of
        ``{"role", "content"}`` dicts. Parameters as :meth:`generate`."""
        body = {"messages": _messages(messages),
                **_params(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                          mode=mode, model=model, request_id=request_id)}
        return GenerationResult.from_dict(await self._http.request("POST", "/chat", json_body=body))

    async def batch(self, items: Sequence[str | Sequence[Message]], *, max_tokens: int | None = None,
                    temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                    stop: str | Sequence[str] | None = None, mode: str | None = None,
                    model: str | None = None) -> list[BatchItem]:
        """Several generations in one request (``POST /batch``): each item a prompt (text) or a
        list of chat messages. One answer per item, in order: a :class:`GenerationResult`, or a
        :class:`BatchFailure` when that item failed (check ``item.ok``); the rest still run."""
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise TypeError("items must be a list of prompts (str) or of message lists")
        if not 1 <= len(items) <= checks.MAX_BATCH:
            raise ValueError(f"items must hold 1 to {checks.MAX_BATCH} prompts, not {len(items)}")
        payload: list[Any] = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                payload.append(_check_prompt(item, f"items[{i}]"))
            elif isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
                payload.append(_messages(item))
            else:
                raise TypeError(f"items[{i}] must be a prompt (str) or a list of messages, not {type(item).__name__}")
        body = {"items": payload,
                **_params(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                          mode=mode, model=model)}
        answer = await self._http.request("POST", "/batch", json_body=body)
        members = answer.get("results", answer.get("items")) if isinstance(answer, Mapping) else answer
        if not isinstance(members, list):
            raise OrinClientError(f"unexpected answer from POST /batch: {type(answer).__name__}")
        return [batch_item(m) for m in members if isinstance(m, Mapping)]

    def stream(self, prompt: str | None = None, *, messages: Messages | None = None, max_tokens: int | None = None,
               temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
               stop: str | Sequence[str] | None = None, mode: str | None = None, model: str | None = None,
               request_id: str | None = None) -> TextStream:
        """A streamed generation: ``prompt=`` (``POST /generate``) or ``messages=`` (``POST
        /chat``), with ``"stream": true``. Iterate the returned :class:`TextStream` for the text;
        nothing is sent until the first iteration."""
        if (prompt is None) == (messages is None):
            raise TypeError("stream() takes prompt= or messages=, exactly one of them")
        params = _params(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                         mode=mode, model=model, request_id=request_id)
        if prompt is not None:
            return TextStream(self._http, "/generate", {"prompt": _check_prompt(prompt), **params, "stream": True})
        return TextStream(self._http, "/chat", {"messages": _messages(messages), **params, "stream": True})
