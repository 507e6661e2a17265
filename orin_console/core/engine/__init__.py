"""The inference engine: task detection (``tasks``, ``task_rules``), model selection
(``selection``), and quick / chat / batch generation over the manager (``inference``,
``streams``, ``types``)."""
