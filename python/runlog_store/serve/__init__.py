"""``runlog serve``: the runs of a store as web pages (``create_app``), read-only."""

from runlog_store.serve.app import create_app

__all__ = ["create_app"]
