//! locker: keep several Linux distributions side by side and run them as containers.
//!
//! `main` parses the command line, dispatches, and is the only place that prints an
//! error or chooses an exit code (Docker's convention: 125 for locker's own errors,
//! 126/127 when the command cannot be run, else the command's own status).

// Every unsafe block says why it is sound (STYLE.md: raw syscalls in audited places).
#![deny(clippy::undocumented_unsafe_blocks)]

mod build;
mod cli;
mod commands;
mod exit;
mod fs;
mod image;
mod oci;
mod progress;
mod run;
mod store;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use exit::ExitStatus;

fn main() -> ExitCode {
    // runc's command line: as `locker-runtime` (a symlink) or `locker oci`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    if argv0.file_name().is_some_and(|n| n == "locker-runtime") {
        args.remove(0);
        return ExitCode::from(commands::oci::main(args).code());
    }
    if args.get(1).is_some_and(|a| a == "oci") {
        args.drain(..2);
        return ExitCode::from(commands::oci::main(args).code());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return ExitCode::from(
                match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitStatus::Success,
                    _ => ExitStatus::Failure,
                }
                .code(),
            );
        }
    };
    let status = match commands::dispatch(cli) {
        Ok(status) => status,
        // `locker images | head -1`: the reader is gone, and that is not a failure.
        Err(e) if closed_stdout(&e) => ExitStatus::Success,
        Err(e) => {
            let mut line = one_line(&e);
            if let Some(hint) = hint(&e) {
                line = format!("{line}; {hint}");
            }
            eprintln!("locker: {line}");
            e.downcast_ref::<run::RunError>()
                .map_or(ExitStatus::Failure, run::RunError::exit_status)
        }
    };
    ExitCode::from(status.code())
}

/// A write to stdout failed because its reader closed the pipe (Rust ignores SIGPIPE,
/// so the write returns EPIPE instead of killing us).
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The next step for errors whose message does not already say it. The innermost
/// system error decides first (a full disk is a full disk, whichever step hit it).
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    // Found before anything was fetched, and its message names the fix.
    let keyring_missing = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<image::verify::VerifyError>(),
            Some(image::verify::VerifyError::KeyringMissing { .. })
        )
    });
    if keyring_missing {
        return None;
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                    return Some("nothing was installed; free some disk space (`locker gc` removes leftovers) and retry")
                }
                // An ordinary user's locker is rootless (its own store and user
                // namespace): a refusal is about someone else's files, not a missing sudo.
                Some(libc::EACCES) | Some(libc::EPERM) if !nix::unistd::geteuid().is_root() => {
                    return Some("it belongs to another user, or to root")
                }
                _ => {}
            }
        }
    }
    for cause in e.chain() {
        if cause.is::<image::fetch::FetchError>() {
            return Some("nothing was installed; check the URL and the network, then retry (a partial download resumes)");
        }
        if cause.is::<image::unpack::UnpackError>() || cause.is::<image::verify::VerifyError>() {
            return Some("nothing was installed");
        }
        if cause
            .downcast_ref::<build::BuildError>()
            .is_some_and(|b| !matches!(b, build::BuildError::Usage(_)))
        {
            return Some("nothing was installed; verified packages stay cached for the retry");
        }
    }
    None
}

/// The error chain on one line, "outer: inner: cause", skipping a cause whose text an
/// outer message already carries (some library errors embed their source).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
