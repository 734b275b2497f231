//! The image commands at the CLI edge: pull, import, images, rmi, catalog, gc. Each
//! composes catalog, pull and store, and prints its result (stdout: results; stderr:
//! progress and remarks).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::build;
use crate::cli::{BuildArgs, Cli};
use crate::image::catalog::{self, Catalog, Source, Verification};
use crate::image::pull::{self, Origin};
use crate::image::reference::{self, Reference};
use crate::image::{oci, registry};
use crate::progress::{Printer, Verbosity};
use crate::store::digest::Digest;
use crate::store::{Installed, Store};

/// What every command needs from the global options.
pub(crate) struct Context {
    pub root: PathBuf,
    pub catalog: Option<PathBuf>,
    pub printer: Printer,
}

impl Context {
    pub(crate) fn new(cli: &Cli) -> Self {
        let verbosity = Verbosity::from_flags(cli.quiet, cli.verbose);
        Context {
            root: cli.root.clone(),
            catalog: cli.catalog.clone(),
            printer: Printer::new(verbosity),
        }
    }

    pub(crate) fn catalog(&self) -> anyhow::Result<Catalog> {
        Ok(Catalog::load(self.catalog.as_deref())?)
    }

    pub(crate) fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.root)?)
    }
}

pub(crate) fn pull(ctx: &Context, name: &str, platform: Option<&str>) -> anyhow::Result<()> {
    if reference::is_reference(name) {
        let installed =
            pull_reference(ctx, name, platform).with_context(|| format!("pull {name}"))?;
        report(ctx, &installed)?;
        return Ok(());
    }
    if platform.is_some() {
        anyhow::bail!("pull {name}: --platform applies to OCI references (REGISTRY/REPO:TAG), not catalog names");
    }
    let store = ctx.store()?;
    let catalog = ctx.catalog()?;
    let installed =
        pull_entry(&store, &catalog, name, &ctx.printer).with_context(|| format!("pull {name}"))?;
    report(ctx, &installed)?;
    Ok(())
}

/// An OCI image from its registry; layers the store has are not fetched again.
fn pull_reference(ctx: &Context, name: &str, platform: Option<&str>) -> anyhow::Result<Installed> {
    let reference = Reference::parse(name)?;
    let platform = platform.map(oci::Platform::parse).transpose()?;
    let store = ctx.store()?;
    oci::pull(&store, &reference, platform.as_ref(), None, &ctx.printer)
}

/// The store's name for what the user typed: a reference in its full form
/// (`127.0.0.1:5000/img` is `127.0.0.1:5000/img:latest`), a catalog name as it is.
pub(crate) fn store_name(name: &str) -> String {
    if reference::is_reference(name) {
        if let Ok(r) = Reference::parse(name) {
            return r.to_string();
        }
    }
    name.to_string()
}

/// `locker login REGISTRY -u USER --password-stdin`: the credentials are checked with a
/// request the registry must authorize, then written to podman's auth.json
/// (`$XDG_RUNTIME_DIR/containers/auth.json`), or Docker's config.json without it.
pub(crate) fn login(ctx: &Context, registry_host: &str, user: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("read the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        anyhow::bail!("login {registry_host}: empty password on stdin");
    }
    let creds = registry::Credentials {
        user: user.to_string(),
        password,
    };
    // Any repository works for the handshake; a token for it proves the credentials.
    let probe = Reference::parse(&format!("{registry_host}/locker-login-check"))
        .with_context(|| format!("login {registry_host}"))?;
    registry::Registry::new(&probe, false)?
        .with_credentials(creds.clone())
        .ping()
        .with_context(|| format!("login {registry_host}"))?;
    let path = registry::auth_files()
        .into_iter()
        .find(|p| !p.ends_with("config.json") || std::env::var_os("XDG_RUNTIME_DIR").is_none())
        .ok_or_else(|| {
            anyhow::anyhow!("login {registry_host}: neither XDG_RUNTIME_DIR nor HOME is set")
        })?;
    let old = match std::fs::read(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    // A file that sends this registry to a credential helper: the helper keeps them.
    let helper = match &old {
        Some(t) => registry::helper_in(t, registry_host)
            .map_err(|r| anyhow::anyhow!("login {registry_host}: {}: {r}", path.display()))?,
        None => None,
    };
    if let Some(helper) = helper {
        crate::image::cred_helper::store(&helper, registry_host, &creds)
            .with_context(|| format!("login {registry_host}"))?;
        ctx.printer.info(&format!(
            "Login Succeeded: credentials for {registry_host} in docker-credential-{helper}"
        ));
        return Ok(());
    }
    let text = registry::set_auth(old.as_deref(), registry_host, &creds)
        .map_err(|r| anyhow::anyhow!("login {registry_host}: {}: {r}", path.display()))?;
    write_private(&path, &text).with_context(|| format!("write {}", path.display()))?;
    ctx.printer.info(&format!(
        "Login Succeeded: credentials for {registry_host} in {}",
        path.display()
    ));
    Ok(())
}

/// Writes a 0600 file by rename (credentials: never readable by others, never half-written).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// The catalog entry NAME (or an alias), unless the store has it: downloaded and
/// verified, or built from its apt archive.
fn pull_entry(
    store: &Store,
    catalog: &Catalog,
    name: &str,
    printer: &Printer,
) -> anyhow::Result<Installed> {
    let entry = catalog.find(name)?;
    if let Some(installed) = pull::present(store, entry)? {
        return Ok(installed);
    }
    pull::check_arch(entry)?;
    match &entry.source {
        Source::Download { url, verify } => pull::download(store, entry, url, verify, printer),
        Source::Oci { reference } => {
            let reference = Reference::parse(reference)?;
            oci::pull(
                store,
                &reference,
                None,
                Some((&entry.name, &entry.aliases)),
                printer,
            )
        }
        Source::Build(spec) => {
            let req = build::Request::from_entry(entry, spec, build::deb_cache(store));
            build::build(store, &req, printer)
        }
    }
}

pub(crate) fn import(
    ctx: &Context,
    source: &str,
    name: &str,
    sha256: Option<&str>,
) -> anyhow::Result<()> {
    catalog::check_name(name).map_err(|m| anyhow::anyhow!("import: bad name {name:?}: {m}"))?;
    let expected = sha256
        .map(|hex| hex.parse::<Digest>())
        .transpose()
        .with_context(|| format!("import {source}: --sha256"))?;
    let origin = Origin::parse(source).with_context(|| format!("import {source}"))?;
    let store = ctx.store()?;
    let installed = pull::install(&store, &origin, expected, name, &[], &ctx.printer)
        .with_context(|| format!("import {source}"))?;
    report(ctx, &installed)?;
    Ok(())
}

/// `locker build NAME`: flags, over the catalog entry NAME's `build` when there is one.
pub(crate) fn build(ctx: &Context, args: &BuildArgs) -> anyhow::Result<()> {
    catalog::check_name(&args.name)
        .map_err(|m| anyhow::anyhow!("build: bad name {:?}: {m}", args.name))?;
    let store = ctx.store()?;
    let cache = args
        .deb_cache
        .clone()
        .unwrap_or_else(|| build::deb_cache(&store));
    let catalog = ctx.catalog()?;
    let from_catalog = catalog.find(&args.name).ok().and_then(|e| match &e.source {
        Source::Build(spec) => Some(build::Request::from_entry(e, spec, cache.clone())),
        Source::Download { .. } | Source::Oci { .. } => None,
    });
    let mut req = match (from_catalog, &args.suite) {
        (Some(r), _) => r,
        (None, Some(suite)) => build::Request {
            name: args.name.clone(),
            aliases: Vec::new(),
            suite: suite.clone(),
            mirror: None,
            keyring: None,
            variant: "minbase".into(),
            include: Vec::new(),
            components: Vec::new(),
            arch: catalog::host_arch().into(),
            check_valid_until: true,
            deb_cache: cache,
        },
        (None, None) => anyhow::bail!(
            "build {}: no catalog entry builds it; pass --suite SUITE (and --mirror, --keyring)",
            args.name
        ),
    };
    if let Some(s) = &args.suite {
        req.suite = s.clone();
    }
    if args.mirror.is_some() {
        req.mirror = args.mirror.clone();
    }
    if args.keyring.is_some() {
        req.keyring = args.keyring.clone();
    }
    if let Some(v) = &args.variant {
        req.variant = v.clone();
    }
    req.include
        .extend(args.include.iter().filter(|s| !s.is_empty()).cloned());
    if !args.components.is_empty() {
        req.components = args.components.clone();
    }
    if let Some(a) = &args.arch {
        req.arch = a.clone();
    }
    req.check_valid_until = !args.no_check_valid_until;
    let installed =
        build::build(&store, &req, &ctx.printer).with_context(|| format!("build {}", req.name))?;
    report(ctx, &installed)?;
    Ok(())
}

/// The image's name and digest on stdout (what scripts read); a note on stderr when
/// nothing had to be fetched.
fn report(ctx: &Context, installed: &Installed) -> std::io::Result<()> {
    if !installed.fetched {
        ctx.printer.info(&format!(
            "{} is already present (sha256:{})",
            installed.name,
            installed.digest.short()
        ));
    }
    writeln!(
        std::io::stdout(),
        "{} sha256:{}",
        installed.name,
        installed.digest
    )
}

#[derive(Serialize)]
struct ImageRow {
    name: String,
    aliases: Vec<String>,
    digest: String,
    size: u64,
    source: String,
    created: String,
    /// An OCI image's layers (sha256:HEX, bottom first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layers: Vec<String>,
}

pub(crate) fn images(ctx: &Context, json: bool) -> anyhow::Result<()> {
    // Reading never creates or locks the store: `images` is safe during a pull.
    let refs = Store::existing(&ctx.root).refs()?;
    let rows: Vec<ImageRow> = refs
        .images
        .iter()
        .map(|(name, r)| ImageRow {
            name: name.clone(),
            aliases: r.aliases.clone(),
            digest: format!("sha256:{}", r.digest),
            size: r.size,
            source: r.source.clone(),
            created: humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(r.created))
                .to_string(),
            layers: r.layers.iter().map(|l| format!("sha256:{l}")).collect(),
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                if r.aliases.is_empty() {
                    "-".into()
                } else {
                    r.aliases.join(",")
                },
                r.digest.trim_start_matches("sha256:")[..12].to_string(),
                human_size(r.size),
                r.created
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .to_string(),
                r.source.clone(),
            ]
        })
        .collect();
    print_table(
        &mut out,
        &["NAME", "ALIASES", "DIGEST", "SIZE", "CREATED", "SOURCE"],
        &table,
    )?;
    Ok(())
}

pub(crate) fn rmi(
    ctx: &Context,
    names: &[String],
    in_use: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let store = Store::existing(&ctx.root);
    let names: Vec<String> = names.iter().map(|n| store_name(n)).collect();
    let freed = store.remove_names(&names, in_use).context("rmi")?;
    let mut out = std::io::stdout().lock();
    for name in &names {
        writeln!(out, "untagged {name}")?;
    }
    for digest in freed {
        writeln!(out, "deleted sha256:{digest}")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct CatalogRow<'a> {
    name: &'a str,
    aliases: &'a [String],
    arch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    source: &'a Source,
    layer: &'a str,
}

pub(crate) fn catalog(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let catalog = ctx.catalog()?;
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<CatalogRow> = catalog
            .entries()
            .map(|e| CatalogRow {
                name: &e.name,
                aliases: &e.aliases,
                arch: &e.arch,
                description: e.description.as_deref(),
                source: &e.source,
                layer: &e.layer,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    let table: Vec<Vec<String>> = catalog
        .entries()
        .map(|e| {
            let (how, from) = match &e.source {
                Source::Download {
                    url,
                    verify: Verification::Pinned { .. },
                } => ("sha256", url.clone()),
                Source::Download {
                    url,
                    verify: Verification::Signed { .. },
                } => ("signed", url.clone()),
                Source::Build(b) => ("build", format!("apt suite {}", b.suite)),
                Source::Oci { reference } => ("oci", reference.clone()),
            };
            vec![
                e.name.clone(),
                if e.aliases.is_empty() {
                    "-".into()
                } else {
                    e.aliases.join(",")
                },
                e.arch.clone(),
                how.to_string(),
                from,
            ]
        })
        .collect();
    print_table(
        &mut out,
        &["NAME", "ALIASES", "ARCH", "VERIFY", "SOURCE"],
        &table,
    )?;
    Ok(())
}

pub(crate) fn gc(ctx: &Context, in_use: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Address leases of network namespaces that are gone (machine-wide, whatever the
    // store).
    let leases = crate::run::net::network::forget_dead_namespaces();
    for d in &leases {
        writeln!(
            out,
            "removed leases of a gone network namespace {}",
            d.display()
        )?;
    }
    if !ctx.root.exists() {
        if leases.is_empty() {
            writeln!(out, "nothing to free")?;
        }
        return Ok(());
    }
    let report = ctx.store()?.gc(in_use).context("gc")?;
    for item in &report.items {
        writeln!(out, "removed {item}")?;
    }
    if report.items.is_empty() && leases.is_empty() {
        writeln!(out, "nothing to free")?;
    } else if !report.items.is_empty() {
        writeln!(out, "freed {}", human_size(report.bytes))?;
    }
    Ok(())
}

/// Left-aligned columns separated by three spaces, like `docker images`.
fn print_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("   ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `locker push NAME REF`: prints `REF sha256:MANIFEST`.
pub(crate) fn push(ctx: &Context, name: &str, reference: &str) -> anyhow::Result<()> {
    let what = || format!("push {name} {reference}");
    let target = Reference::parse(reference).with_context(what)?;
    let epoch =
        crate::image::export::source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
            .with_context(what)?;
    let store = ctx.store()?;
    let (digest, sent) = crate::image::oci_out::push(&store, &store_name(name), &target, epoch)
        .with_context(what)?;
    ctx.printer.detail(&format!(
        "{target}: {} blobs uploaded ({} resumed), {} mounted from another repository, {} already there",
        sent.uploaded, sent.resumed, sent.mounted, sent.present
    ));
    writeln!(std::io::stdout(), "{target} sha256:{digest}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn table_aligns() {
        let mut out = Vec::new();
        print_table(&mut out, &["A", "B"], &[vec!["long".into(), "x".into()]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A      B\nlong   x\n");
    }
}
