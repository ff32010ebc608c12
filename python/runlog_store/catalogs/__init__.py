"""The catalogs this package registers (entry-point group ``runlog_store.catalog``)."""
