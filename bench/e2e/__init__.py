"""The bench plugin of ``bench/e2e.py`` (``plugin.yaml``, tools in ``tools.py``)."""
