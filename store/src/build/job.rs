//! Job language (being written).
