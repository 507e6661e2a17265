"""Memory: prediction from the GGUF header (``prediction``, ``kvcache``), measurements that
correct it (``measurements``), and admission control over budgets (``admission``)."""
