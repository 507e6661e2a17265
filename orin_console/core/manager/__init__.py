"""The manager: the one facade every front end calls (``manager``), the per-model runtime
state (``model``) and its value types (``types``)."""
