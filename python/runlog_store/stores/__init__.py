"""The stores shipped with runlog-store, one per module, registered through entry points."""
