//! `locker build`: bootstrap a Debian/Ubuntu root filesystem from an apt archive, as
//! debootstrap and mmdebstrap do, verified end to end:
//! sources → signed InRelease → Release → Packages → resolve → fetch → unpack → configure.
//!
//! This module holds the pure, network-free foundations; the fetch, unpack and
//! configure steps are wired in later.

// Nothing outside `build` calls these yet; the CLI wiring lands with the fetch step.
#![allow(dead_code)]

pub(crate) mod deb822;
pub(crate) mod release;
pub(crate) mod resolve;
pub(crate) mod sources;
pub(crate) mod version;
