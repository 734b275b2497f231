//! The command layer: the only code that reads clap's types or prints results. Each
//! verb family turns its arguments into the typed requests of the layers below
//! (`run::Spec`, `build::Request`, catalog names) and prints what they return.

pub(crate) mod containers;
pub(crate) mod images;
pub(crate) mod networks;
pub(crate) mod oci;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;
use crate::image::export;
use crate::run::{monitor, state, userns};
use crate::store::{self, Store};

/// Runs the command `cli` names.
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    enter_user_namespace(&cli)?;
    store::check_owned(&cli.root).with_context(|| format!("use store {}", cli.root.display()))?;
    let ctx = images::Context::new(&cli);
    let root = cli.root.as_path();
    let in_use = |digest: &str| state::user_of(root, digest);
    let done = |r: anyhow::Result<()>| r.map(|()| ExitStatus::Success);
    match cli.command {
        Command::Pull(a) => done(images::pull(&ctx, &a.name, a.platform.as_deref())),
        Command::Login(a) => done(images::login(&ctx, &a.registry, &a.username)),
        Command::Push(a) => done(images::push(&ctx, &a.name, &a.reference)),
        Command::Import(a) => done(images::import(
            &ctx,
            &a.source,
            &a.name,
            a.sha256.as_deref(),
        )),
        Command::Build(a) => done(images::build(&ctx, &a)),
        Command::Images(a) => done(images::images(&ctx, a.json)),
        Command::Rmi(a) => done(images::rmi(&ctx, &a.names, &in_use)),
        Command::Catalog(a) => done(images::catalog(&ctx, a.json)),
        Command::Export(a) => {
            let epoch = export::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
                .with_context(|| format!("export {}", a.name))?;
            let name = images::store_name(&a.name);
            let store = Store::existing(root);
            let r = match a.format.as_str() {
                "oci" => crate::image::oci_out::export(&store, &name, &a.output, epoch),
                "rootfs" => {
                    let layered = store.resolve(&name)?.is_some_and(|i| !i.lowers.is_empty());
                    if layered {
                        Err(anyhow::anyhow!(
                            "{name} is an OCI image (layers): use --format oci"
                        ))
                    } else {
                        export::export(&store, &name, &a.output, epoch)
                    }
                }
                other => Err(anyhow::anyhow!(
                    "unknown --format {other:?}: use rootfs or oci"
                )),
            };
            done(r.with_context(|| format!("export {}", a.name)))
        }
        Command::Gc => {
            state::reap_stale(root).context("remove leftovers of killed containers")?;
            monitor::reap(root);
            if nix::unistd::geteuid().is_root() && !userns::rootless() {
                userns::reap_leases();
            }
            done(images::gc(&ctx, &in_use))
        }
        Command::Run(a) => {
            let image =
                resolve_image(&ctx, &a.image).with_context(|| format!("run {}", a.image))?;
            containers::run(root, &a, image).map(ExitStatus::Code)
        }
        Command::Ps(a) => done(containers::ps(root, a.all, a.json)),
        Command::Stop(a) => done(containers::stop(root, &a)),
        Command::Rm(a) => done(containers::rm(root, &a)),
        Command::Logs(a) => done(containers::logs(root, &a)),
        Command::Attach(a) => containers::attach(root, &a).map(ExitStatus::Code),
        Command::Wait(a) => done(containers::wait(root, &a.names)),
        Command::Inspect(a) => done(containers::inspect(root, &a.names)),
        Command::Start(a) => {
            let mut code = 0;
            for name in &a.names {
                let keys = a.attach.then_some(a.detach_keys.as_str());
                code = start(&ctx, name, keys, None)?;
            }
            Ok(ExitStatus::Code(code))
        }
        Command::Restart(a) => {
            for name in &a.names {
                start(&ctx, name, None, Some(&a))?;
            }
            Ok(ExitStatus::Success)
        }
        Command::Exec(a) => containers::exec(root, &a).map(ExitStatus::Code),
        Command::Network(c) => done(networks::dispatch(root, c)),
        Command::Oci(a) => Ok(oci::main(a.args.into_iter().map(Into::into).collect())),
    }
}

/// An ordinary user's commands that write the store or start containers run as root
/// of a user namespace of their own (run/userns.rs); `exec` joins its container's,
/// and the rest only read or signal what the user owns.
fn enter_user_namespace(cli: &Cli) -> anyhow::Result<()> {
    let reads_only = matches!(
        cli.command,
        Command::Exec(_)
            | Command::Ps(_)
            | Command::Images(_)
            | Command::Catalog(_)
            | Command::Logs(_)
            | Command::Attach(_)
            | Command::Wait(_)
            | Command::Inspect(_)
            | Command::Stop(_)
            | Command::Login(_)
    );
    if reads_only {
        return Ok(());
    }
    let entered = userns::enter().context("run as an ordinary user")?;
    if let userns::Entered::Mapped(map) = entered {
        let warns = matches!(
            cli.command,
            Command::Pull(_) | Command::Import(_) | Command::Build(_) | Command::Run(_)
        );
        if map.is_single() && warns && !cli.quiet {
            let user = std::env::var("USER").unwrap_or_else(|_| "this user".into());
            eprintln!("{}", userns::single_id_warning(&user));
        }
    }
    Ok(())
}

/// `start` (and `restart`, which stops it first) of the detached container `name`:
/// its stored run arguments, the image resolved again.
fn start(
    ctx: &images::Context,
    name: &str,
    attach: Option<&str>,
    stop_first: Option<&crate::cli::StopArgs>,
) -> anyhow::Result<u8> {
    let root = ctx.root.as_path();
    let what = || format!("start {name}");
    let f = monitor::find(root, name)
        .ok_or_else(|| crate::run::RunError::NoContainer(name.into()))
        .with_context(what)?;
    if let Some(a) = stop_first {
        containers::stop_if_running(root, &f, a)?;
    }
    let args: crate::cli::RunArgs = serde_json::from_value(f.config.create.clone())
        .with_context(|| format!("read the configuration of container {name}"))?;
    let image = resolve_image(ctx, &args.image).with_context(what)?;
    containers::start(root, &f, &args, image, attach)
}

/// The image `run` uses: from the store with one read of refs.json; only when it is
/// missing are the catalog and the network involved (then it is pulled first).
fn resolve_image(ctx: &images::Context, name: &str) -> anyhow::Result<store::Resolved> {
    let name = images::store_name(name);
    if let Some(resolved) = Store::existing(&ctx.root).resolve(&name)? {
        return Ok(resolved);
    }
    ctx.printer
        .info(&format!("{name} is not in the store; pulling it"));
    images::pull(ctx, &name, None)?;
    Store::existing(&ctx.root)
        .resolve(&name)?
        .ok_or_else(|| anyhow::anyhow!("pull {name} recorded no image"))
}
