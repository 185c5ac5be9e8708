"""Platform clients: one shared request loop (``http``), one package per platform."""
