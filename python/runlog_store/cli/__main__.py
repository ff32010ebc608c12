"""``python -m runlog_store.cli``: the ``runlog`` command without its console script."""

from runlog_store.cli.app import main

main()
