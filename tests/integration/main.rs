//! Integration tests: the real `locker` binary, as root, against real kernel features,
//! real root filesystems and an HTTP server on 127.0.0.1. One test binary
//! (`autotests = false`); each area is a module.

#![deny(clippy::undocumented_unsafe_blocks)]

mod build;
mod clients;
mod containment;
mod debian;
mod detached;
mod export;
mod harness;
mod images;
mod network;
mod oci;
mod ocirt;
mod pull;
mod registry;
mod rootless;
mod run;
mod server;
mod stdio;
