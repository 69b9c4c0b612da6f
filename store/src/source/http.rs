//! Source downloads over HTTP(S) through the store's one client ([`crate::http`]): retries with
//! backoff, a throughput floor instead of a total deadline, resumption with `Range` requests
//! ([`crate::http::resume`]), and the SHA-256 of the bytes computed while they are written to
//! the download file.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use reqwest::blocking::Client;

use super::{FetchEvent, SourceError};
use crate::hash::{Digest, DigestWriter};
use crate::http::resume::{self, Progress, ResumeSink};
use crate::http::{HttpError, HttpOptions};
use crate::IoContext;

/// A client configured for `options`. One per fetch.
pub(crate) fn client(options: &HttpOptions, url: &str) -> Result<Client, SourceError> {
    Ok(crate::http::client(options, url)?)
}

/// What a download produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Downloaded {
    /// SHA-256 of the body.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// The download file, hashed as it is written.
struct HashedFile<'a> {
    file: File,
    path: &'a Path,
    hasher: DigestWriter,
}

impl ResumeSink for HashedFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let written = self.file.write_all(bytes);
        written.io_context("write", self.path)?;
        self.hasher.update(bytes);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), HttpError> {
        let emptied = self
            .file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()));
        emptied.io_context("truncate", self.path)?;
        self.hasher = DigestWriter::new();
        Ok(())
    }
}

/// Downloads `url` into the new file `dest`, retrying and resuming as `options` allow.
///
/// # Errors
/// [`SourceError::Http`] for the download's failures (see [`resume::download`]),
/// [`SourceError::Io`] if `dest` cannot be created or flushed. `dest` may hold partial content
/// afterwards; the caller removes it.
pub(crate) fn download(
    client: &Client,
    url: &str,
    dest: &Path,
    options: &HttpOptions,
    progress: Option<&(dyn Fn(FetchEvent<'_>) + Sync)>,
) -> Result<Downloaded, SourceError> {
    let file = File::create(dest).io_context("create", dest)?;
    let mut sink = HashedFile {
        file,
        path: dest,
        hasher: DigestWriter::new(),
    };
    let report = |event: Progress| {
        if let Some(report) = progress {
            report(match event {
                Progress::Started { total, done } => FetchEvent::Download { url, total, done },
                Progress::Received { done } => FetchEvent::Progress { done },
            });
        }
    };
    let size = resume::download(client, url, &mut sink, options, &report)?;
    sink.file.flush().io_context("write", dest)?;
    Ok(Downloaded {
        digest: sink.hasher.finish(),
        size,
    })
}
