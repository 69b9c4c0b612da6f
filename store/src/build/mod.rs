//! Build store (being written).
pub mod job;
