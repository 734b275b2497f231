//! `locker build`: bootstrap a Debian/Ubuntu root filesystem from an apt archive, as
//! debootstrap and mmdebstrap do, verified end to end:
//! sources → signed InRelease → Release → Packages → resolve → fetch → unpack and
//! record in dpkg's database → configure (dpkg inside a locker container, writing
//! into the tree) → image.
//!
//! The pure foundations (deb822, versions, Release, resolver, sources) are unit
//! tested; `bootstrap` composes them with the network, the package cache, the store
//! and `run::run` with the tree itself as the root (`run::Root::Direct`).

pub(crate) mod archive;
pub(crate) mod bootstrap;
pub(crate) mod deb;
pub(crate) mod deb822;
pub(crate) mod dpkg_db;
pub(crate) mod release;
pub(crate) mod resolve;
pub(crate) mod sources;
pub(crate) mod version;

use std::io;

use crate::fs::path_error::PathError;
use crate::image::fetch::FetchError;
use crate::image::verify::VerifyError;

pub(crate) use bootstrap::{build, deb_cache, Request};

#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("verify {what}")]
    Verify {
        what: String,
        #[source]
        source: VerifyError,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error("{what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{0}")]
    Usage(String),
    #[error("run dpkg in the build container")]
    Container(#[source] crate::run::RunError),
    #[error("configure the packages (dpkg exited with {code}){log}")]
    Configure { code: u8, log: String },
}

impl BuildError {
    /// A 404 from the archive (an optional file it does not publish).
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            BuildError::Fetch(FetchError::Status { code, .. }) => *code == 404 || *code == 410,
            BuildError::Io(e) => e.source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
