//! locker: keep several Linux distributions side by side and run them as containers.
//!
//! `main` parses the command line, dispatches, and is the only place that prints an
//! error or chooses an exit code (Docker's convention: 125 for locker's own errors,
//! 126/127 when the command cannot be run, else the command's own status).

mod catalog;
mod cli;
mod containers;
mod digest;
mod fetch;
mod progress;
mod pull;
mod run;
mod store;
mod unpack;
mod verify;

use std::process::ExitCode;

use anyhow::Context;
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
            // run's own mapping: 126 not executable, 127 not found, else 125.
            ExitCode::from(
                e.downcast_ref::<run::RunError>()
                    .map_or(EXIT_LOCKER, run::RunError::exit_code),
            )
        }
    }
}

/// The image `run` uses: from the store (pull-when-missing comes later).
fn resolve_image(root: &std::path::Path, name: &str) -> anyhow::Result<store::Resolved> {
    match store::Store::existing(root).resolve(name)? {
        Some(r) => Ok(r),
        None => anyhow::bail!("no image {name} in the store; `locker pull {name}` first"),
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
        Command::Gc => {
            containers::reap_stale(&cli.root).context("remove leftovers of killed containers")?;
            pull::gc(&ctx).map(|_| 0)
        }
        Command::Run(a) => {
            let image = resolve_image(&cli.root, &a.image)?;
            run::run(&cli.root, &image, &a).with_context(|| format!("run {}", a.image))
        }
        Command::Ps(a) => containers::ps(&cli.root, a.all, a.json).map(|_| 0),
        Command::Stop(a) => containers::stop(&cli.root, &a.names).map(|_| 0),
        Command::Rm(a) => containers::rm(&cli.root, &a.names).map(|_| 0),
        Command::Exec(a) => containers::exec(&cli.root, &a),
    }
}
