//! The run index a search answers from (`runlog_store.search.index`): the rows of a run
//! (`rows`), the case folding of their text (`casefold`), and a build of the whole index from
//! nothing (`build`). The tables and the SQL are Python's; the core makes the rows and writes
//! them when there are too many for Python to bind one by one.

pub mod build;
pub mod casefold;
pub mod rows;
