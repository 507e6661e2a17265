"""The async Python SDK. Talks to the API over HTTP only; imports nothing from core."""
