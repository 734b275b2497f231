//! The command layer: the only code that reads clap's types or prints results. Each
//! verb family turns its arguments into the typed requests of the layers below.

pub(crate) mod images;
