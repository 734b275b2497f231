//! locker: keep several Linux distributions side by side and run them as containers.
//!
//! `main` parses the command line, dispatches, and is the only place that prints an
//! error or chooses an exit code (Docker's convention: 125 for locker's own errors,
//! 126/127 when the command cannot be run, else the command's own status).

mod build;
mod cli;
mod commands;
mod fs;
mod image;
mod progress;
mod run;
mod store;

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
            let mut line = one_line(&e);
            if let Some(hint) = hint(&e) {
                line = format!("{line}; {hint}");
            }
            eprintln!("locker: {line}");
            // run's own mapping: 126 not executable, 127 not found, else 125.
            ExitCode::from(
                e.downcast_ref::<run::RunError>()
                    .map_or(EXIT_LOCKER, run::RunError::exit_code),
            )
        }
    }
}

/// The image `run` uses: from the store with one read of refs.json; only when it is
/// missing are the catalog and the network involved (then it is pulled first).
fn resolve_image(ctx: &commands::images::Context, name: &str) -> anyhow::Result<store::Resolved> {
    if let Some(resolved) = store::Store::existing(&ctx.root).resolve(name)? {
        return Ok(resolved);
    }
    ctx.printer
        .info(&format!("{name} is not in the store; pulling it"));
    commands::images::pull(ctx, name)?;
    store::Store::existing(&ctx.root)
        .resolve(name)?
        .ok_or_else(|| anyhow::anyhow!("pull {name} recorded no image"))
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = commands::images::Context::new(&cli);
    let root = cli.root.as_path();
    let in_use = |digest: &str| run::state::user_of(root, digest);
    match cli.command {
        Command::Pull(a) => commands::images::pull(&ctx, &a.name).map(|_| 0),
        Command::Import(a) => {
            commands::images::import(&ctx, &a.source, &a.name, a.sha256.as_deref()).map(|_| 0)
        }
        Command::Build(a) => commands::images::build(&ctx, &a).map(|_| 0),
        Command::Images(a) => commands::images::images(&ctx, a.json).map(|_| 0),
        Command::Rmi(a) => commands::images::rmi(&ctx, &a.names, &in_use).map(|_| 0),
        Command::Catalog(a) => commands::images::catalog(&ctx, a.json).map(|_| 0),
        Command::Export(a) => {
            let epoch = image::export::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
                .with_context(|| format!("export {}", a.name))?;
            image::export::export(&store::Store::existing(root), &a.name, &a.output, epoch)
                .with_context(|| format!("export {}", a.name))
                .map(|_| 0)
        }
        Command::Gc => {
            run::state::reap_stale(root).context("remove leftovers of killed containers")?;
            commands::images::gc(&ctx, &in_use).map(|_| 0)
        }
        Command::Run(a) => {
            let image =
                resolve_image(&ctx, &a.image).with_context(|| format!("run {}", a.image))?;
            run::run(root, &image, &a).with_context(|| format!("run {}", a.image))
        }
        Command::Ps(a) => run::state::ps(root, a.all, a.json).map(|_| 0),
        Command::Stop(a) => run::state::stop(root, &a.names).map(|_| 0),
        Command::Rm(a) => run::state::rm(root, &a.names).map(|_| 0),
        Command::Exec(a) => run::state::exec(root, &a),
    }
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
                Some(libc::EACCES) | Some(libc::EPERM) if !nix::unistd::geteuid().is_root() => {
                    return Some("run locker as root")
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
