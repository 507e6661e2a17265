"""Request bodies (strict: unknown fields are refused, every field bounded) and response
shapes of the seed routes, with examples for ``/docs``.

Engineers of the other routes and of the SDK read these: a request model here is the one
truth of what a body may hold. Bounds follow the core's own (``max_tokens`` up to the
largest context, ``temperature`` 0..2, 4 stop strings, 256 messages, 64 batch items); the
text bounds keep one request well under the server's body limit. Text fields refuse lone
surrogates (``"\\ud800"`` in JSON), which no runner can encode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from orin_console.core.engine.types import (
    MAX_BATCH,
    MAX_MESSAGES,
    MAX_REQUEST_ID_CHARS,
    MAX_STOP,
    MAX_STOP_CHARS,
    MAX_TOKENS_LIMIT,
    SEED_MAX,
    TEMPERATURE_MAX,
)

MAX_PROMPT_CHARS = 262_144
"""The longest prompt (or message content) one request may carry, in characters."""
MAX_PATH_CHARS = 4096
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"

TierName = Literal["ram", "swap", "disk"]
LoadTier = Literal["ram", "swap"]
TaskName = Literal["chat", "code", "classification", "summarisation", "extraction", "completion"]
ModeName = Literal["auto", "manual", "hybrid"]


def _no_surrogates(value: str) -> str:
    """Refuse lone surrogates: JSON may spell them (``\\ud800``), UTF-8 cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    return value


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes ``5.0``: take it as 5 (strict mode would refuse it);
    ``5.5``, ``"5"`` and ``true`` are still refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# the bounds before the validator, so the document keeps them as minimum / maximum
MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT), BeforeValidator(_integral)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX), BeforeValidator(_integral)]
ContextSize = Annotated[int, Field(ge=64, le=131072), BeforeValidator(_integral)]
Text = Annotated[str, AfterValidator(_no_surrogates)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS), AfterValidator(_no_surrogates)]
ModelId = Annotated[str, StringConstraints(pattern=MODEL_ID_PATTERN)]
StopString = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS),
                       AfterValidator(_no_surrogates)]


class Strict(BaseModel):
    """Unknown fields are refused (a typo is a 422 naming it, not silently ignored), and so are
    values of another JSON type than documented (``"stream": 0``, ``"seed": false``, ``"max_tokens":
    "5"``): pydantic's strict mode, which still takes an integer where a number is asked. Subclasses'
    ``model_config`` is merged with this one."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests: models ---------------------------------------------------------------------


class AddModelRequest(Strict):
    """Add one ``.gguf`` file from a configured model folder to the catalog."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"path": "/data/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "tier": "ram",
                      "tasks": ["chat"]}]})

    path: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_CHARS),
                    AfterValidator(_no_surrogates)] = Field(
        description="The file, inside one of the configured `model_folders` (its real path, "
                    "symlinks resolved, must stay inside).")
    id: ModelId | None = Field(None, description="Catalog id (default: from the file name).")
    tasks: list[TaskName] | None = Field(None, min_length=1, max_length=6,
                                         description="What the model is good for (default: chat "
                                                     "when it has a chat template, else completion).")
    tier: TierName | None = Field(None, description="Preferred tier (default swap).")
    context: ContextSize | None = Field(None, description="Context size in tokens.")
    dry_run: bool = Field(False, description="Only say what would be added (entries, refusals, admission per "
                                             "tier): 200 with an AddPreview; the catalog is not written.")


class LoadRequest(Strict):
    """Load into a tier (default: the model's catalog tier, swap for a ``disk`` one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tier": "ram"}, {}]})

    tier: LoadTier | None = Field(None, description="`ram` or `swap`.")


class MoveRequest(Strict):
    """Move to another tier (``disk`` unloads)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tier": "swap"}]})

    tier: TierName = Field(description="`ram`, `swap` or `disk`.")


class PinRequest(Strict):
    """Pin (or unpin): the usage-based plan keeps a pinned model in its tier."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pinned": True}]})

    pinned: bool = Field(description="True to pin, False to unpin.")


# -- requests: generation ------------------------------------------------------------------


class QuickRequest(Strict):
    """The seed's quick start: one prompt, the model chosen for you."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompt": "Hello world", "max_tokens": 50},
                     {"prompt": "Write a haiku about the Jetson", "max_tokens": 64, "temperature": 0.7,
                      "stream": True}]})

    prompt: Prompt = Field(description=f"The prompt (1 to {MAX_PROMPT_CHARS} characters).")
    max_tokens: MaxTokens | None = Field(None,
                                      description="Most tokens to generate (default 256; at most the model's context).")
    temperature: float | None = Field(None, ge=0, le=TEMPERATURE_MAX, allow_inf_nan=False,
                                      description="0 (greedy) to 2 (default 0.8).")
    mode: ModeName = Field("auto", description="`auto` picks the model; `manual` uses `model`; "
                                               "`hybrid` prefers `model` when it is loaded and fits. "
                                               "Left out with `model` given: `manual`.")
    model: ModelId | None = Field(None, description="A catalog id (needed for `manual`; with no `mode`, "
                                                    "that model answers).")
    stream: bool = Field(False, description="Answer as Server-Sent Events (`routed`, `token`..., `done`).")


class _FullParams(Strict):
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="Nucleus mass (default 0.95).")
    stop: list[StopString] | None = Field(None, max_length=MAX_STOP,
                                          description=f"Up to {MAX_STOP} strings that end the generation.")
    seed: Seed | None = Field(None, description="For reproducible sampling.")
    request_id: Annotated[str, StringConstraints(max_length=MAX_REQUEST_ID_CHARS,
                                                 pattern=REQUEST_ID_PATTERN)] | None = Field(
        None, description="Your id for the request (its events carry it; default: a new one).")


class GenerateRequest(QuickRequest, _FullParams):
    """One prompt with every generation parameter."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompt": "def fib(n):", "max_tokens": 128, "temperature": 0.2, "top_p": 0.9,
                      "stop": ["\n\n"], "seed": 42, "mode": "auto"}]})


class Message(Strict):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS), AfterValidator(_no_surrogates)]


USER_MESSAGE: dict[str, Any] = {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]}
"""JSON Schema for "a message from the user" (a chat needs one: 422 ``ParameterError`` otherwise)."""


class ChatRequest(_FullParams):
    """A chat, oldest message first, through the model's own chat template."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"messages": [{"role": "system", "content": "Answer briefly."},
                                   {"role": "user", "content": "Hello!"}], "max_tokens": 64}]})

    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES,
                                    description=f"1 to {MAX_MESSAGES} messages, at least one from the user.",
                                    json_schema_extra={"contains": USER_MESSAGE})  # checked by the engine
    max_tokens: MaxTokens | None = None
    temperature: float | None = Field(None, ge=0, le=TEMPERATURE_MAX, allow_inf_nan=False)
    mode: ModeName = "auto"
    model: ModelId | None = None
    stream: bool = Field(False, description="Answer as Server-Sent Events.")


class BatchRequest(Strict):
    """Several prompts (a string: quick; a list of messages: chat), run one after another,
    each routed on its own. A member that fails is reported; the rest still run."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"items": ["Hello world", [{"role": "user", "content": "Hi!"}]], "max_tokens": 32}]})

    items: list[Prompt | Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} prompts or message lists.")
    max_tokens: MaxTokens | None = None
    temperature: float | None = Field(None, ge=0, le=TEMPERATURE_MAX, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    stop: list[StopString] | None = Field(None, max_length=MAX_STOP)
    seed: Seed | None = None
    mode: ModeName = "auto"
    model: ModelId | None = None


# -- responses ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    type: str = Field(examples=["ValidationError"])
    message: str = Field(examples=["max_tokens: Input should be less than or equal to 131072"])
    field: str | None = Field(None, examples=["max_tokens"])
    reasons: list[str] | None = Field(None, description="An admission refusal's failed limits.")
    suggestions: list[str] | None = Field(None, description="An admission refusal's moves or unloads that help.")


class ErrorResponse(BaseModel):
    """The seed routes' one error shape."""

    error: ErrorDetail


FILE_FACTS_EXAMPLE: dict[str, Any] = {
    "file_size": 397808192, "quantization": "Q4_K_M", "architecture": "qwen2", "n_params": 494032768,
    "context_length": 32768, "name": "Qwen2.5 0.5B Instruct", "problem": None}


class FileFacts(BaseModel):
    """What the model file's GGUF header says (read once per file and cached by its real path,
    size and modification time). Every field is null when the header cannot be read; `problem`
    then says why. Texts from the file are sanitised."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        FILE_FACTS_EXAMPLE,
        {"file_size": None, "quantization": None, "architecture": None, "n_params": None,
         "context_length": None, "name": None,
         "problem": "magic: expected b'GGUF' at offset 0, found b'\\x00\\x00\\x00\\x00'; not a GGUF file"},
    ]})

    file_size: int | None = Field(description="The file's size in bytes.")
    quantization: str | None = Field(description="`Q4_K_M` and the like.")
    architecture: str | None = Field(description="`general.architecture`, e.g. `llama`.")
    n_params: int | None = Field(description="Parameters (elements over all tensors).")
    context_length: int | None = Field(description="The context the model was trained with.")
    name: str | None = Field(None, description="`general.name`, when the file has one.")
    problem: str | None = Field(description="Why the header cannot be read, or the entry's context is above the "
                                            "trained one (with the fix); null when all is well.")


class ModelInfo(BaseModel):
    """One catalog model: its entry, where it runs, its memory, its usage and its file's facts."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "qwen-0.5b", "file": "models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "tasks": ["chat"],
        "context": 2048, "preferred_tier": "ram", "tier": "ram", "target_tier": None, "state": "ready",
        "pin": False, "progress": None, "predicted_bytes": 612000000, "measured_bytes": 598000000,
        "resident": "pinned", "error": None, "busy": False, "queued": 0, "requests": 12,
        "tok_per_s": 41.3, "notes": [], "facts": FILE_FACTS_EXAMPLE}]})

    id: str
    file: str | None
    tasks: list[str]
    context: int | None = None
    preferred_tier: str
    tier: str
    target_tier: str | None = None
    state: str = Field(description="unloaded, loading, ready, moving, unloading or failed")
    pin: bool
    progress: float | None
    predicted_bytes: int | None
    measured_bytes: int | None
    resident: str | None
    error: str | None
    busy: bool = False
    queued: int = 0
    requests: int
    tok_per_s: float | None
    notes: list[str]
    facts: FileFacts | None = Field(None, description="The file's header facts (null: the entry is gone).")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Refused(BaseModel):
    path: str
    reason: str


class AddResponse(BaseModel):
    added: list[ModelInfo]
    refused: list[Refused]


class Operation(BaseModel):
    """A load, move or unload in the background: follow it at ``GET /operations/{id}`` or on
    ``GET /events`` (``LoadProgress``, ``ModelStateChanged``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "op-3f2a9c1e", "model_id": "qwen-0.5b", "action": "load", "tier": "ram",
        "state": "running", "progress": 0.42, "error": None, "created": 1767225600.0,
        "finished": None}]})

    id: str
    model_id: str
    action: Literal["load", "move", "unload"]
    tier: str | None
    state: Literal["running", "done", "failed", "cancelled"]
    error: ErrorDetail | None = None
    progress: float | None = None
    created: float
    finished: float | None = None
    status: dict[str, Any] | None = Field(None, description="The model's status once the operation ended.")


class OperationResponse(BaseModel):
    operation: Operation


class PlanResponse(BaseModel):
    """A dry run: would the load (or move) be admitted, and why (itemised)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ok": False, "summary": "`big` does not fit in the RAM tier",
        "explanation": "`big` does not fit in the RAM tier; needs 4.1 GB, RAM tier has 1.2 GB free; "
                       "moving `small` to swap would free 0.6 GB.",
        "reasons": ["needs 4.1 GB, RAM tier has 1.2 GB free of its 5.0 GB budget"],
        "suggestions": [{"action": "move", "model_id": "small", "from_tier": "ram", "to_tier": "swap",
                         "helps": False, "text": "moving `small` to swap would free 0.6 GB"}],
        "needed": {"weights": 3900000000, "total": 4100000000}, "free": {"tier": 1200000000},
        "strategy": None}]})

    ok: bool
    model_id: str
    tier: str
    action: str
    summary: str
    explanation: str
    reasons: list[str]
    suggestions: list[dict[str, Any]]
    together: list[str] = []
    pinned: list[str] = []
    needed: dict[str, int]
    free: dict[str, int]
    limits: list[dict[str, Any]] = []
    strategy: str | None
    frees: int = 0
    from_tier: str | None = None


class ProposedModel(BaseModel):
    """A file ``POST /models/add`` would add: its proposed entry, header facts, predicted memory
    and admission's verdict for each loaded tier now."""

    id: str
    path: str = Field(description="The path as the catalog would store it.")
    file: str = Field(description="The file's real path.")
    tasks: list[str]
    tier: str = Field(description="The catalog tier it would get.")
    context: int
    load_tier: str = Field(description="Where a load without a named tier would go.")
    header: dict[str, Any] = Field(description="`version`, `architecture`, `quantization`, `n_params`, "
                                               "`file_size`, `context_length`, `chat_template` (bool).")
    prediction: dict[str, Any] | None = Field(description="`tier`, `total_bytes`, `text` for `load_tier`.")
    problem: str | None = None
    admission: dict[str, PlanResponse] = Field(description="Tier (`ram`, `swap`) -> admission's verdict now.")
    fits: dict[str, bool] = Field(description="Tier -> whether a load there would be admitted now.")


class AddPreview(BaseModel):
    """``POST /models/add`` with ``dry_run``: what would be added; nothing is written."""

    dry_run: Literal[True]
    path: str
    addable: bool = Field(description="At least one file would be added.")
    entries: list[ProposedModel]
    refused: list[Refused]


class ModelStats(BaseModel):
    """A model's usage figures (requests and tokens ever; moving averages of speed)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "qwen-0.5b", "requests": 12, "tokens": 840, "recent": 3.2, "last_used": 1767225600.0,
        "ttft_s": 0.081, "tok_per_s": 41.3, "load_seconds": 1.9, "measured_bytes": 598000000,
        "predicted_bytes": 612000000, "prediction_error": 0.023}]})

    id: str
    requests: int
    tokens: int
    recent: float | None
    last_used: float | None
    ttft_s: float | None
    tok_per_s: float | None
    load_seconds: float | None = None
    move_seconds_per_gb: float | None = None
    measured_bytes: int | None = None
    predicted_bytes: int | None = None
    prediction_error: float | None = None


class GenerationResult(BaseModel):
    """A finished generation (the engine's result)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "text": " Hello! How can I help?", "model": "qwen-0.5b", "model_id": "qwen-0.5b", "task": "chat",
        "mode": "auto", "explanation": "chat: greeting; auto picked `qwen-0.5b` (loaded, fits the task)",
        "ttft_s": 0.08, "tok_per_s": 41.0, "prompt_tokens": 3, "tokens": 7, "finish_reason": "stop",
        "request_id": "api-1a2b3c"}]})

    text: str
    model: str
    model_id: str
    task: str
    explanation: str
    ttft_s: float | None
    tok_per_s: float | None
    tokens: int
    finish_reason: str
    request_id: str | None


class BatchResponse(BaseModel):
    """Each member's result (``ok: true``) or failure (``ok: false``, ``error``, ``kind``), in order."""

    results: list[dict[str, Any]]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "Host not allowed, or a request the core refuses",
        401: "Missing or wrong bearer token",
        404: "Unknown model or operation; no model can serve",
        409: "Admission refused: the body itemises the reasons and suggestions",
        413: "Request body too large (`BodyTooLarge`), or a prompt far beyond the model's context "
             "(`PromptTooLong`: the message names its size, the bound and the fix)",
        422: "Invalid payload: `field` names the field",
        429: "The model's queue is full: retry shortly",
        503: "Shutting down, or the model is unavailable",
    }.items()
}
"""``responses=`` for routes, so ``/docs`` shows the error shape at each status."""

EDIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    507: {"model": ErrorResponse, "description": "`DiskFull`: the catalog could not be saved because its file system "
                                                 "is full (or the quota used up); the message names the folder. Free "
                                                 "space there and retry: the catalog on disk is unchanged"},
}
"""``responses=`` for the routes that edit the catalog (add, pin)."""
