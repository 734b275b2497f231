//! Output policy: -q / -v / TTY, and the indicatif implementation of `fetch::Reporter`.
//! (Placeholder until the progress module lands.)

use crate::fetch::Reporter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub(crate) struct Printer {
    verbosity: Verbosity,
}

struct Silent;

impl Reporter for Silent {
    fn begin(&self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn note(&self, _: &str) {}
}

impl Printer {
    pub(crate) fn new(verbosity: Verbosity) -> Self {
        Printer { verbosity }
    }

    pub(crate) fn info(&self, msg: &str) {
        if self.verbosity != Verbosity::Quiet {
            eprintln!("{msg}");
        }
    }

    pub(crate) fn detail(&self, msg: &str) {
        if self.verbosity == Verbosity::Verbose {
            eprintln!("{msg}");
        }
    }

    pub(crate) fn reporter(&self) -> Box<dyn Reporter> {
        Box::new(Silent)
    }
}
