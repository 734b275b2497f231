//! Getting images: the catalog names them, fetch downloads (resumable), verify checks
//! digests and signatures, codec decompresses, unpack writes a tree confined to its
//! destination, pull streams all of it into the store; export writes a store tree as a
//! canonical tarball. Data flows catalog -> fetch -> verify -> codec -> unpack -> store.

pub(crate) mod catalog;
pub(crate) mod codec;
pub(crate) mod cred_helper;
pub(crate) mod export;
pub(crate) mod fetch;
pub(crate) mod oci;
pub(crate) mod oci_out;
pub(crate) mod pipe;
pub(crate) mod pull;
pub(crate) mod reference;
pub(crate) mod registry;
pub(crate) mod trust;
pub(crate) mod unpack;
pub(crate) mod verify;
