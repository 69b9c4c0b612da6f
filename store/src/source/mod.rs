//! Source cache (being written).
