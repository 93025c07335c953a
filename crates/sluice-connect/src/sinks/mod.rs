//! One module per target system.
