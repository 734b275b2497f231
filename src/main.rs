//! locker: keep several Linux distributions side by side and run them as containers.
//!
//! `main` parses the command line, dispatches, and is the only place that prints an
//! error or chooses an exit code (Docker's convention: 125 for locker's own errors,
//! 126/127 when the command cannot be run, else the command's own status).

mod build;
mod catalog;
mod cli;
mod digest;
mod fetch;
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
            eprintln!("locker: {e:#}");
            ExitCode::from(EXIT_LOCKER)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = pull::Context::new(&cli);
    match cli.command {
        Command::Pull(a) => pull::pull_named(&ctx, &a.name).map(|_| 0),
        Command::Import(a) => pull::import(&ctx, &a.source, &a.name, a.sha256.as_deref()).map(|_| 0),
        Command::Images(a) => pull::list_images(&ctx, a.json).map(|_| 0),
        Command::Rmi(a) => pull::remove_images(&ctx, &a.names).map(|_| 0),
        Command::Catalog(a) => pull::list_catalog(&ctx, a.json).map(|_| 0),
        Command::Gc => pull::gc(&ctx).map(|_| 0),
        Command::Run(_) | Command::Ps(_) | Command::Exec(_) | Command::Stop(_) | Command::Rm(_) => {
            anyhow::bail!("containers are not available in this build yet")
        }
    }
}
