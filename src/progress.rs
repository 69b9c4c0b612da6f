//! Progress bars on stderr, only when it is a terminal and `-q` was not given.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether live progress is wanted: stderr is a terminal and `-q` was not given.
pub fn live(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A byte-counting progress bar, hidden when not wanted.
pub fn bytes_bar(total: u64, message: &str, quiet: bool) -> ProgressBar {
    if !live(quiet) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
        )
        .expect("static template"),
    );
    bar.set_message(message.to_string());
    bar
}

/// Sum of file sizes under `dir` (for the ingest bar's total), without following symlinks.
pub fn tree_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}
