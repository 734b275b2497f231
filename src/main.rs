//! locker: keep several Linux distributions side by side and run them as containers.
//!
//! `main` parses the command line, dispatches, and is the only place that prints an
//! error or chooses an exit code (Docker's convention: 125 for locker's own errors,
//! 126/127 when the command cannot be run, else the command's own status).

mod catalog;
mod cli;
mod digest;
mod fetch;
mod images;
mod pipe;
mod progress;
mod pull;
mod store;
mod unpack;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Exit code for any failure of locker itself (Docker, podman).
const EXIT_LOCKER: u8 = 125;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_LOCKER),
            };
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut line = one_line(&e);
            if let Some(hint) = hint(&e) {
                line = format!("{line}; {hint}");
            }
            eprintln!("locker: {line}");
            ExitCode::from(EXIT_LOCKER)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = images::Context::new(&cli);
    let no_containers = |_: &str| None;
    match cli.command {
        Command::Pull(a) => images::pull(&ctx, &a.name).map(|_| 0),
        Command::Import(a) => {
            images::import(&ctx, &a.source, &a.name, a.sha256.as_deref()).map(|_| 0)
        }
        Command::Images(a) => images::images(&ctx, a.json).map(|_| 0),
        Command::Rmi(a) => images::rmi(&ctx, &a.names, &no_containers).map(|_| 0),
        Command::Catalog(a) => images::catalog(&ctx, a.json).map(|_| 0),
        Command::Gc => images::gc(&ctx, &no_containers).map(|_| 0),
        Command::Run(_) | Command::Ps(_) | Command::Exec(_) | Command::Stop(_) | Command::Rm(_) => {
            anyhow::bail!("containers are not available in this build yet")
        }
    }
}

/// The next step for errors whose message does not already say it.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<fetch::FetchError>() {
            let _ = e;
            return Some("nothing was installed; check the URL and the network, then retry (a partial download resumes)");
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return Some("run locker as root");
            }
            if e.raw_os_error() == Some(libc::ENOSPC) {
                return Some("free some disk space (`locker gc` removes leftovers) and retry");
            }
        }
        if cause.downcast_ref::<unpack::UnpackError>().is_some() {
            return Some("nothing was installed");
        }
        if cause.downcast_ref::<verify::VerifyError>().is_some() {
            return Some("nothing was installed");
        }
    }
    None
}

/// The error chain on one line, "outer: inner: cause", skipping a cause whose text an
/// outer message already carries (some library errors embed their source).
fn one_line(e: &anyhow::Error) -> String {
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
