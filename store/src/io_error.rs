//! The one I/O error with context: what was being done, to which path, and the `io::Error`.
//!
//! Every layer's error enum holds it as `#[error(transparent)] Io(#[from] IoError)`, so a
//! failed file operation reads the same in every layer (`{action} {path}: {cause}`) and the
//! `io::Error` stays reachable as the source (its kind and errno are never lost). Call sites
//! attach the context with [`IoContext::io_context`] and let `?` pick the layer's variant.

use std::io;
use std::path::{Path, PathBuf};

/// A file system operation that failed: `action` (a verb phrase such as `"read"` or
/// `"create directory"`) on `path`, caused by `source`.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl IoError {
    /// The error of `action` on `path` failing with `source`.
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IoError {
            action,
            path: path.into(),
            source,
        }
    }

    /// What was being done (`"read"`, `"create directory"`, …).
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The path it was done to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kind of the underlying `io::Error` (e.g. `NotFound`), for callers that treat some
    /// kinds as outcomes rather than failures.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Attaches an [`IoError`]'s context to an `io::Result`.
pub trait IoContext<T> {
    /// The result with its error wrapped as "`action` `path`" failed.
    fn io_context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, IoError> {
        self.map_err(|source| IoError::new(action, path, source))
    }
}

#[cfg(test)]
mod tests {
    use super::{IoContext, IoError};
    use std::error::Error;
    use std::io;

    #[test]
    fn the_message_names_action_path_and_cause_and_keeps_the_source() {
        let error = std::fs::read("/nonexistent/hdist-io-error")
            .io_context("read", "/nonexistent/hdist-io-error")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error
                .to_string()
                .starts_with("read /nonexistent/hdist-io-error: "),
            "{error}"
        );
        let source = error
            .source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .unwrap();
        assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(crate::error_chain(&error), error.to_string());
    }

    #[test]
    fn a_layer_variant_shows_the_same_text() {
        #[derive(Debug, thiserror::Error)]
        enum Layer {
            #[error(transparent)]
            Io(#[from] IoError),
        }
        let inner = IoError::new("stat", "/x", io::Error::other("gone"));
        let text = inner.to_string();
        let layer = Layer::from(inner);
        assert_eq!(layer.to_string(), text);
        assert_eq!(crate::error_chain(&layer), "stat /x: gone");
    }
}
