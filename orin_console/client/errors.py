"""The SDK's exceptions: the server's error, carried whole, and what went wrong on the way.

Every error the server answers is ``{"error": {"type", "message", "field"?, ...}}``; the SDK
raises it as an :class:`OrinAPIError` subclass chosen by the HTTP status, so a caller can catch
exactly what it can act on::

    OrinClientError                 anything the SDK raises on purpose
    ├── OrinConnectionError         the server could not be reached (or the connection broke)
    │   └── OrinTimeoutError        it did not answer in time
    └── OrinAPIError                the server answered with an error (status, type, message, field)
        ├── AuthenticationError     401: no token, or the wrong one
        ├── PermissionDeniedError   403: a path outside the server's model folders
        ├── NotFoundError           404: unknown model, or no model can serve the request
        ├── AdmissionRefusedError   409: the model would not fit (reasons, suggestions)
        ├── ValidationError         422: a bad argument (field names it)
        │   └── PromptTooLongError  413 PromptTooLong: the prompt is far beyond the model's context
        ├── BusyError               429: the model's queue is full; retry shortly
        ├── ServerError             5xx: shutting down, a runner died, an internal error
        │   └── DiskFullError       507: the server's catalog file system is full (free space there)
        └── OperationFailedError    a load, move or unload followed with wait=True failed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orin_console.client.types import Operation

SERVE_HINT = "is `orin-console serve` running, and on this address?"


class OrinClientError(Exception):
    """Base of every exception the SDK raises on purpose."""


class OrinConnectionError(OrinClientError):
    """The server could not be reached, or the connection broke mid-answer.

    Attributes:
        url: the URL asked for.
        reason: what the transport said.
    """

    def __init__(self, url: str, reason: str, message: str | None = None) -> None:
        self.url = url
        self.reason = reason
        super().__init__(message or f"cannot reach Orin Console at {url}: {reason}; {SERVE_HINT}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.url, self.reason, str(self)))


class OrinTimeoutError(OrinConnectionError):
    """The server did not answer (or send the next piece) within the client's timeout, or an
    operation was still running when ``wait(timeout=...)`` ran out."""


class OrinAPIError(OrinClientError):
    """The server answered with an error.

    Attributes:
        status: the HTTP status (for an error that arrived inside a stream, after the 200 had
            been sent: the status the server gives it, or None).
        type: the server's error type (``AdmissionRefused``, ``ModelBusy``, ``ValidationError``...).
        message: the server's message, in the operator's words.
        field: the request field at fault, for a validation error.
        body: the whole ``error`` object as the server sent it.
    """

    def __init__(self, status: int | None, type: str, message: str, field: str | None = None,
                 body: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.body: dict[str, Any] = dict(body or {})
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "in the stream"
        field = f" (field: {self.field})" if self.field else ""
        return f"{self.type} ({where}): {self.message}{field}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.status, self.type, self.message, self.field, self.body))


class AuthenticationError(OrinAPIError):
    """401: the server needs ``Authorization: Bearer <token>`` (``OrinClient(token=...)``)."""


class PermissionDeniedError(OrinAPIError):
    """403: the server refuses this on principle (``models.add`` of a file outside its
    configured model folders)."""


class NotFoundError(OrinAPIError):
    """404: an unknown model or operation, or no model can serve the request."""


class AdmissionRefusedError(OrinAPIError):
    """409: the model would not fit.

    Attributes:
        reasons: why, item by item, in the operator's words.
        suggestions: what would make it fit (unload a model, choose another tier...).
    """

    @property
    def reasons(self) -> list[str]:
        return _strings(self.body.get("reasons"))

    @property
    def suggestions(self) -> list[str]:
        return _strings(self.body.get("suggestions"))

    def _describe(self) -> str:
        text = super()._describe()
        if self.suggestions:
            text += "; suggestions: " + "; ".join(self.suggestions)
        return text


class ValidationError(OrinAPIError):
    """422: a bad argument; :attr:`field` names it."""


class PromptTooLongError(ValidationError):
    """413 ``PromptTooLong``: the prompt cannot fit the model's context; the message names its
    size, the bound and the fix. (A body above the server's limit, 413 ``BodyTooLarge``, stays
    an :class:`OrinAPIError`.)"""


class BusyError(OrinAPIError):
    """429: the model's queue is full; retry shortly."""


class ServerError(OrinAPIError):
    """5xx: the server is shutting down (503), a runner died or failed to load (502), or an
    internal error (500, logged in full on the server)."""


class DiskFullError(ServerError):
    """507: a catalog edit (add, pin) could not be saved because the server's file system is
    full or its quota used up; the message names the folder. Free space there and retry: the
    catalog is unchanged."""


class OperationFailedError(OrinAPIError):
    """A load, move or unload followed with ``wait=True`` ended ``failed`` or ``cancelled``.

    Attributes:
        operation: the operation in its final state.
    """

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        error = operation.error
        status: int | None = None
        if isinstance(error, Mapping):
            body = dict(error)
            kind = str(error.get("type") or "OperationFailed")
            message = str(error.get("message") or operation.state)
            embedded = error.get("status")
            status = embedded if isinstance(embedded, int) and not isinstance(embedded, bool) else None
        else:
            body = {"message": error} if error else {}
            kind = "OperationCancelled" if operation.state == "cancelled" else "OperationFailed"
            message = str(error) if error else f"the operation was {operation.state}"
        super().__init__(status, kind, f"{operation.action} {operation.model_id}: {message}", None, body)

    def _describe(self) -> str:
        return f"{self.type} (operation {self.operation.id}, {self.operation.state}): {self.message}"

    @property
    def reasons(self) -> list[str]:
        """An admission refusal's reasons, when the load was refused when it ran."""
        return _strings(self.body.get("reasons"))

    @property
    def suggestions(self) -> list[str]:
        """An admission refusal's suggestions, when the load was refused when it ran."""
        return _strings(self.body.get("suggestions"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.operation,))


_BY_STATUS: dict[int, type[OrinAPIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: AdmissionRefusedError,
    422: ValidationError,
    429: BusyError,
    507: DiskFullError,
}

# An error that arrives as an SSE ``error`` event has no status of its own: its type decides.
_BY_TYPE: dict[str, type[OrinAPIError]] = {
    "Unauthorized": AuthenticationError,
    "AdmissionRefused": AdmissionRefusedError,
    "ValidationError": ValidationError,
    "ParameterError": ValidationError,
    "RunnerInputError": ValidationError,
    "EngineError": ValidationError,
    "PromptTooLong": PromptTooLongError,
    "ContextAboveTrained": ValidationError,
    "ModelBusy": BusyError,
    "SelectionError": NotFoundError,
    "UnknownModel": NotFoundError,
    "NotFound": NotFoundError,
    "ShuttingDown": ServerError,
    "DiskFull": DiskFullError,
}


def error_class(status: int | None, kind: str) -> type[OrinAPIError]:
    """The exception class for an error answer: by status, else (inside a stream) by type."""
    if status is not None:
        if status == 413 and kind == "PromptTooLong":
            return PromptTooLongError
        if status >= 500:
            return _BY_STATUS.get(status, ServerError)
        return _BY_STATUS.get(status, OrinAPIError)
    return _BY_TYPE.get(kind, ServerError)


def api_error(status: int | None, payload: Any, *, fallback: str = "") -> OrinAPIError:
    """The exception for a server's error answer (``payload`` the decoded JSON body, or
    anything else when the body was not the seed's error shape)."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(error, Mapping):
        kind = str(error.get("type") or "Error")
        message = str(error.get("message") or fallback or "no message")
        field = error.get("field")
        body: Mapping[str, Any] = error
    elif isinstance(error, str):  # some servers answer {"error": "text"}
        kind, message, field, body = "Error", error, None, {"message": error}
    else:
        kind, message, field, body = "HTTPError", fallback or "the server's answer carried no error object", None, {}
    if status is None and isinstance(error, Mapping):  # a stream's error event says its status
        embedded = error.get("status")
        status = embedded if isinstance(embedded, int) and not isinstance(embedded, bool) else None
    cls = error_class(status, kind)
    return cls(status, kind, message, str(field) if field is not None else None, body)


def _strings(value: Any) -> list[str]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [str(v) for v in value]
    return []
