//! in-process router tests
