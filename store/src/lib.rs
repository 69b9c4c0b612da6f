//! hdist-store: the content-addressed store behind hdist.
//!
//! Layers, bottom up: [`hash`] (SHA-256 digests and Hashdist-compatible ids), [`blob`]
//! (verified content-addressed objects), [`tree`] (Merkle directories), [`index`] (the SQLite
//! view), [`artifact`] and [`store`] (the local store that ties them together).
pub mod artifact;
pub mod blob;
pub mod build;
pub mod catalog;
pub mod commit;
pub mod crashpoint;
#[cfg(test)]
mod fuzzing;
pub mod gc;
pub mod glob;
pub mod hash;
pub mod http;
pub mod index;
pub mod io_error;
pub mod modes;
pub mod profile;
pub mod remote;
pub mod scratch;
pub mod source;
pub mod stack;
pub mod store;
pub mod suggest;
pub mod testing;
pub mod tree;
pub mod union;
pub mod verify;

pub use artifact::{ArtifactId, ArtifactRecord};
pub use hash::Digest;
pub use io_error::{IoContext, IoError};
pub use store::{Store, StoreError};

/// An error with its causes joined by `": "`, skipping a cause whose text is already shown (a
/// layer that prints its source inline): the one formatter of error chains, for log messages,
/// reports and the CLI's error line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("reading {0}")]
        Quiet(&'static str, #[source] io::Error),
        #[error("reading {0}: {1}")]
        Inline(&'static str, #[source] io::Error),
    }

    #[test]
    fn a_chain_joins_the_causes_and_shows_an_inline_one_once() {
        let quiet = Outer::Quiet("a", io::Error::other("gone"));
        assert_eq!(error_chain(&quiet), "reading a: gone");
        let inline = Outer::Inline("a", io::Error::other("gone"));
        assert_eq!(error_chain(&inline), "reading a: gone");
    }
}
