//! Source cache tests (being written).
