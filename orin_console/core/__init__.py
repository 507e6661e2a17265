"""The manager core: catalog, settings, GGUF validation, admission, runners, telemetry.

This package must never import textual, fastapi, uvicorn or httpx (checked by import-linter
and by ``tests/test_architecture.py``).
"""
