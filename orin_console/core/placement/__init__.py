"""Placement: usage records (``usage``), the usage-based placement plan (``plan``), applying it
(``optimiser``) and predictive preloading (``preload``)."""
