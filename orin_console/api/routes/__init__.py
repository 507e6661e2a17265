"""The API's routes, one module per group; each exposes an ``APIRouter`` named ``router``."""
