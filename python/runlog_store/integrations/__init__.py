"""runlog-store serving other frameworks through their own plugin mechanisms.

``runlog_store.integrations.runnable`` registers the stores and catalogs in runnable 0.50's
plugin groups (install the extra: ``pip install 'runlog-store[runnable]'``); it is the only
module of the package that imports runnable. (The store that reads both of runnable's
local layouts in one folder, which needs no runnable, is ``runlog_store.stores.project``.)
"""
