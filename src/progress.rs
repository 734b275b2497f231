//! Output policy: -q / -v / TTY; the `Reporter` trait downloads report progress to,
//! and its indicatif implementation.
//!
//! Everything goes to stderr (stdout is for `--json` and command output). Progress bars
//! are drawn only when stderr is a terminal and not with -q; without a terminal, -v
//! turns the fetcher's notes into plain lines and everything else stays silent.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress callbacks; the fetcher calls them from whatever thread reads the download.
pub(crate) trait Reporter: Send + Sync {
    /// A transfer starts: `total` bytes if known, `already` bytes replayed from a partial file.
    fn begin(&self, what: &str, total: Option<u64>, already: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
    /// A one-line remark shown with -v (e.g. "resuming at 12 MiB").
    fn note(&self, msg: &str);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

impl Verbosity {
    /// From `-q` / `-v`; quiet wins.
    pub(crate) fn from_flags(quiet: bool, verbose: bool) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

pub(crate) struct Printer {
    verbosity: Verbosity,
    tty: bool,
}

impl Printer {
    pub(crate) fn new(verbosity: Verbosity) -> Self {
        Printer {
            verbosity,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Whether -v was given (tools run for us may then show their own output).
    pub(crate) fn is_verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// A line for the user (what happened), unless -q.
    pub(crate) fn info(&self, msg: &str) {
        if self.verbosity != Verbosity::Quiet {
            eprintln!("{msg}");
        }
    }

    /// A line only -v shows (how it happened).
    pub(crate) fn detail(&self, msg: &str) {
        if self.verbosity == Verbosity::Verbose {
            eprintln!("{msg}");
        }
    }

    /// A reporter for one transfer.
    pub(crate) fn reporter(&self) -> Box<dyn Reporter> {
        match (self.verbosity, self.tty) {
            (Verbosity::Quiet, _) => Box::new(Silent { notes: false }),
            (v, true) => Box::new(Bar::new(v == Verbosity::Verbose)),
            (v, false) => Box::new(Silent {
                notes: v == Verbosity::Verbose,
            }),
        }
    }
}

/// No terminal (or -q): no bar; notes as plain lines if asked.
struct Silent {
    notes: bool,
}

impl Reporter for Silent {
    fn begin(&self, _what: &str, _total: Option<u64>, _already: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
    fn note(&self, msg: &str) {
        if self.notes {
            eprintln!("{msg}");
        }
    }
}

struct Bar {
    bar: ProgressBar,
    verbose: bool,
}

impl Bar {
    fn new(verbose: bool) -> Self {
        // Hidden until `begin` knows whether there is a total to draw against.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        Bar { bar, verbose }
    }
}

impl Reporter for Bar {
    fn begin(&self, what: &str, total: Option<u64>, already: u64) {
        let style = match total {
            Some(total) => {
                self.bar.set_length(total);
                ProgressStyle::with_template(
                    "{msg:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .map(|s| s.progress_chars("=> "))
            }
            None => ProgressStyle::with_template("{spinner} {msg:.bold} {bytes} {bytes_per_sec}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style);
        }
        self.bar.set_message(what.to_string());
        self.bar.set_position(already);
        // ETA and rate count from here, not from the replayed bytes.
        self.bar.reset_eta();
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        if total.is_none() {
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn note(&self, msg: &str) {
        if self.verbose {
            if self.bar.is_hidden() {
                eprintln!("{msg}");
            } else {
                self.bar.println(msg);
            }
        }
    }
}

impl Drop for Bar {
    /// A failed transfer never calls `finish`: clear the line before the error prints.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_to_verbosity() {
        assert_eq!(Verbosity::from_flags(true, true), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(false, true), Verbosity::Verbose);
        assert_eq!(Verbosity::from_flags(false, false), Verbosity::Normal);
    }

    #[test]
    fn reporters_take_a_whole_transfer() {
        // Under `cargo test` stderr may or may not be a terminal; both kinds must cope.
        for v in [Verbosity::Quiet, Verbosity::Normal, Verbosity::Verbose] {
            let r = Printer::new(v).reporter();
            r.begin("x.tar.xz", Some(100), 10);
            r.note("resuming");
            r.advance(90);
            r.finish();
            let r = Printer {
                verbosity: v,
                tty: true,
            }
            .reporter();
            r.begin("y", None, 0);
            r.advance(5);
            drop(r);
        }
    }
}
