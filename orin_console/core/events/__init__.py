"""Typed events: the bus (``bus``) and the events the core publishes (``kinds``)."""
