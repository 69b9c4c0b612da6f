//! Remote stores (being written).
