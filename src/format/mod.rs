//! The data directory's format, in one place: the method vocabulary ([`method`]), file-safe
//! layer stems ([`stems`]), the typed `architecture.json` and `scores.json` documents
//! ([`architecture`]), where each file lives ([`paths`]), and the hostile-file-proof reader of
//! a whole directory ([`read`]). `export` writes with these types, `convlens view --data`
//! reads with them, `info --json` prints them; none of them computes anything.

pub mod architecture;
pub mod method;
pub mod paths;
pub mod read;
pub mod stems;

pub use method::Method;
