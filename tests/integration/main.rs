//! Integration tests: the real binary, as root, against real kernel features.
