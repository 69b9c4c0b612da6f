//! Stack files (being written).
