//! The pull pipeline and the image commands: catalog entry -> fetch -> verify ->
//! unpack -> store.

use crate::cli::Cli;

pub(crate) struct Context {
    pub root: std::path::PathBuf,
    pub catalog: Option<std::path::PathBuf>,
    pub quiet: bool,
    pub verbose: bool,
}

impl Context {
    pub(crate) fn new(cli: &Cli) -> Self {
        Context { root: cli.root.clone(), catalog: cli.catalog.clone(), quiet: cli.quiet, verbose: cli.verbose }
    }
}

pub(crate) fn pull_named(_ctx: &Context, _name: &str) -> anyhow::Result<()> {
    anyhow::bail!("pull: in progress")
}
pub(crate) fn import(_ctx: &Context, _s: &str, _n: &str, _h: Option<&str>) -> anyhow::Result<()> {
    anyhow::bail!("import: in progress")
}
pub(crate) fn list_images(_ctx: &Context, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("images: in progress")
}
pub(crate) fn remove_images(_ctx: &Context, _n: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("rmi: in progress")
}
pub(crate) fn list_catalog(_ctx: &Context, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("catalog: in progress")
}
pub(crate) fn gc(_ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("gc: in progress")
}
