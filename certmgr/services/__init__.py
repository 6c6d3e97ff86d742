"""The service layer: each operation composes ``ca``, ``pki`` and ``db``; the CLI and the daemon call it."""
