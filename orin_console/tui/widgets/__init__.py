"""The console's widgets, one per module (Textual's widget template)."""
