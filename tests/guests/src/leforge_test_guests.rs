//! Paths of the test guests.
