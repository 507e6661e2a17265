"""The catalog: ``models.toml`` validated, watched and edited atomically (``store``), and
GGUF files added to it after validation (``add``)."""
