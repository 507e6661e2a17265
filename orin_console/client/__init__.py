"""The async Python SDK. Talks to the API over HTTP only; imports nothing from core.

::

    from orin_console.client import OrinClient

    async with OrinClient() as client:
        result = await client.inference.quick_generate("The future of AI is", max_tokens=50)
        print(result.text)

See docs/sdk.md for every call and error.
"""

from orin_console.client.client import DEFAULT_BASE_URL, ModelsAPI, OrinClient, SystemAPI
from orin_console.client.errors import (
    AdmissionRefusedError,
    AuthenticationError,
    BusyError,
    DiskFullError,
    NotFoundError,
    OperationFailedError,
    OrinAPIError,
    OrinClientError,
    OrinConnectionError,
    OrinTimeoutError,
    PermissionDeniedError,
    PromptTooLongError,
    ServerError,
    ValidationError,
)
from orin_console.client.inference import InferenceAPI, TextStream
from orin_console.client.placement import ApplyResult, MoveOutcome, PlacementAPI, PlacementMove, PlacementPlan
from orin_console.client.preview import AddPreview, ProposedModel
from orin_console.client.types import (
    AddRefusal,
    AddResult,
    BatchFailure,
    BatchItem,
    FileFacts,
    GenerationResult,
    Health,
    ModelInfo,
    ModelStats,
    Operation,
    PlanVerdict,
    Routed,
    ServerEvent,
    Suggestion,
    SystemStatus,
    TierInfo,
)

__all__ = [
    "DEFAULT_BASE_URL", "AddPreview", "AddRefusal", "AddResult", "AdmissionRefusedError", "ApplyResult",
    "AuthenticationError", "BatchFailure", "BatchItem", "BusyError", "DiskFullError", "FileFacts",
    "GenerationResult", "Health", "InferenceAPI", "ModelInfo", "ModelStats", "ModelsAPI", "MoveOutcome",
    "NotFoundError", "Operation", "OperationFailedError", "OrinAPIError", "OrinClient", "OrinClientError",
    "OrinConnectionError", "OrinTimeoutError",
    "PermissionDeniedError", "PlacementAPI", "PlacementMove", "PlacementPlan", "PlanVerdict", "PromptTooLongError",
    "ProposedModel",
    "Routed", "ServerError", "ServerEvent", "Suggestion", "SystemAPI", "SystemStatus", "TextStream", "TierInfo",
    "ValidationError",
]
