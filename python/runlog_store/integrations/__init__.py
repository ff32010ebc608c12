"""runlog-store serving other frameworks through their own plugin mechanisms.

``runlog_store.integrations.runnable`` registers the stores and catalogs in runnable 0.50's
plugin groups (install the extra: ``pip install 'runlog-store[runnable]'``); it is the only
module of the package that imports runnable. ``runlog_store.integrations.project`` reads the
runs a runnable project keeps in its log folder, in both of runnable's local layouts.
"""
