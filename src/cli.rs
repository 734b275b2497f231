//! Command-line surface (the contract in README.md, "Commands"). clap structs only: no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(
    name = "locker",
    version,
    about = "Keep several Linux distributions side by side and run them as containers"
)]
pub(crate) struct Cli {
    /// Store directory (images, containers, work in progress) [default: /var/lib/locker
    /// for root, ~/.local/share/locker for a user]
    #[arg(long, global = true, env = "LOCKER_ROOT", default_value_os_t = crate::store::default_root(), hide_default_value = true)]
    pub root: PathBuf,
    /// Extra catalog layer, read after /etc/locker/images.toml and ~/.config/locker/images.toml
    #[arg(long, global = true, env = "LOCKER_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print each step (long form only: `-v` is run's volume flag, as in Docker)
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `locker oci ARGS..`: runc's command line (main.rs hands it over before this parser).
#[derive(clap::Args, Debug)]
pub(crate) struct OciArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing buys nothing
pub(crate) enum Command {
    /// runc's command line over an OCI bundle (create, start, state, kill, delete, run,
    /// exec, ps, list, pause, resume, features, spec); also as `locker-runtime`
    #[command(disable_help_flag = true)]
    Oci(OciArgs),
    /// Download, verify and unpack an image from the catalog, or an OCI image from a
    /// registry (REGISTRY/REPO[:TAG|@DIGEST]); no-op if present
    Pull(PullArgs),
    /// Upload an image of the store to a registry as an OCI image
    Push(PushArgs),
    /// Store credentials for a registry (checked against it first)
    Login(LoginArgs),
    /// Add a local root tarball or one at a URL to the store
    Import(ImportArgs),
    /// Bootstrap an image from a Debian/Ubuntu apt archive (verified), like mmdebstrap
    Build(BuildArgs),
    /// List images in the store
    Images(ListArgs),
    /// Remove image names; data no name refers to is freed
    Rmi(RmiArgs),
    /// List what can be pulled or built
    Catalog(ListArgs),
    /// Write an image as a tarball, byte for byte reproducible (SOURCE_DATE_EPOCH clamps mtimes)
    Export(ExportArgs),
    /// Remove unreferenced data and leftovers of interrupted work
    Gc,
    /// Run a command in a new container
    Run(RunArgs),
    /// List containers
    Ps(PsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Stop a running container (SIGTERM, then SIGKILL after --time seconds)
    Stop(StopArgs),
    /// Delete stopped named containers
    Rm(RmArgs),
    /// Print a detached container's output (kept until `rm`)
    Logs(LogsArgs),
    /// Connect the terminal to a running detached container
    Attach(AttachArgs),
    /// Start a stopped detached container again with its command and options
    Start(StartArgs),
    /// Stop, then start a detached container
    Restart(StopArgs),
    /// Wait until a detached container has ended; print its exit code
    Wait(NamesArgs),
    /// Print a container's state and configuration as JSON
    Inspect(NamesArgs),
    /// Named networks: their containers reach each other by name
    #[command(subcommand)]
    Network(NetworkCommand),
}

#[derive(Args, Debug)]
pub(crate) struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Container names
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// Stop a running container first (SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Container names
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct LogsArgs {
    /// Keep printing new output until the container has ended
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix each line with its time (RFC 3339)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container name or id
    pub name: String,
}

#[derive(Args, Debug)]
pub(crate) struct AttachArgs {
    /// Keys that detach, leaving the container running (ctrl-X or characters, comma-separated)
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Do not pass stdin
    #[arg(long)]
    pub no_stdin: bool,
    /// Container name or id
    pub name: String,
}

#[derive(Args, Debug)]
pub(crate) struct StartArgs {
    /// Attach to its output (and stdin, if it was created with -i)
    #[arg(short, long)]
    pub attach: bool,
    /// With -a: keys that detach
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Container names or ids
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum NetworkCommand {
    /// Create a network (its bridge comes up with its first container)
    Create(NetworkNameArgs),
    /// List networks
    Ls(ListArgs),
    /// Remove networks no running container uses
    Rm(NamesArgs),
}

#[derive(Args, Debug)]
pub(crate) struct NetworkNameArgs {
    /// Network name (letters, digits, '-', '_', '.')
    pub name: String,
}

#[derive(Args, Debug)]
pub(crate) struct PullArgs {
    /// Image name or alias from the catalog, or an OCI reference (has a `/`, `:` or `@`)
    pub name: String,
    /// OS/ARCH[/VARIANT] to pick from a multi-platform image (default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct PushArgs {
    /// Image name or alias in the store
    pub name: String,
    /// Where to: REGISTRY/REPO[:TAG]
    pub reference: String,
}

#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    /// Registry host[:port]
    pub registry: String,
    /// User name
    #[arg(short, long)]
    pub username: String,
    /// Read the password from stdin (the only way: never on the command line)
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// Path of a root tarball, or an http(s) URL
    pub source: String,
    /// Name to record the image under
    #[arg(long)]
    pub name: String,
    /// Expected sha256 of the archive (hex); without it the digest is computed and printed
    #[arg(long)]
    pub sha256: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
    /// Name to record the image under; a catalog entry with `build` gives the defaults
    pub name: String,
    /// Suite or codename (bookworm, trixie, jammy, noble, ...)
    #[arg(long)]
    pub suite: Option<String>,
    /// Archive root URL (default: the catalog's, else the host's apt sources for the suite)
    #[arg(long)]
    pub mirror: Option<String>,
    /// OpenPGP keyring the archive's Release is signed with (default for Debian suites:
    /// /usr/share/keyrings/debian-archive-keyring.gpg)
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Package set: minbase (= required), required, important, essential, apt, buildd, standard
    #[arg(long)]
    pub variant: Option<String>,
    /// Extra packages (and their dependencies), comma-separated
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
    /// Archive components (default: the catalog's, the host source's, else main)
    #[arg(long, value_delimiter = ',')]
    pub components: Vec<String>,
    /// Architecture (default: this machine's)
    #[arg(long)]
    pub arch: Option<String>,
    /// Accept a Release past its Valid-Until (e.g. a snapshot archive)
    #[arg(long)]
    pub no_check_valid_until: bool,
    /// Package cache directory (default: ROOT/cache/debs)
    #[arg(long, env = "LOCKER_DEB_CACHE", hide = true)]
    pub deb_cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Image name or alias
    pub name: String,
    /// Output: FILE.tar, .tar.gz/.tgz, .tar.xz/.txz, .tar.zst/.tzst; `-` for a plain tar on stdout;
    /// with --format oci: a directory (OCI image layout) or FILE.tar of one
    #[arg(short, long)]
    pub output: PathBuf,
    /// rootfs (a root filesystem tarball) or oci (an OCI image layout)
    #[arg(long, default_value = "rootfs")]
    pub format: String,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RmiArgs {
    /// Image names to remove
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct NamesArgs {
    /// Container names
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct PsArgs {
    /// Also list stopped named containers
    #[arg(short, long)]
    pub all: bool,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set an environment variable (K=V)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// USER[:GROUP] by name or number
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container name
    pub name: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// What the container may do: the protections, and the only ways to loosen them.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SecurityArgs {
    /// Add a capability (Docker's names: NET_RAW, SYS_PTRACE, ...; ALL)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=PROFILE.json (Docker's format), no-new-privileges
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Turn the protections off: every capability, no seccomp filter, no masked paths
    #[arg(long)]
    pub privileged: bool,
    /// The command's OOM score adjustment (-1000..1000; default 0)
    #[arg(long, allow_negative_numbers = true)]
    pub oom_score_adj: Option<i32>,
    /// Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, ...; default nofile=1024, core=0)
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// User namespace: host (default for root), or auto (root only: the container's
    /// root is an unprivileged id range from the `locker` entry of /etc/subuid)
    #[arg(long)]
    pub userns: Option<String>,
}

/// Stored with a detached container (config.json), so `start` makes it again.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunArgs {
    /// Keep the container's changes on disk under this name (reused by the next run)
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background under a monitor; print the container's id
    #[arg(short = 'd', long)]
    #[serde(default)]
    pub detach: bool,
    /// Restart policy of a detached container: no, on-failure[:N], always
    #[arg(long, default_value = "no")]
    #[serde(default)]
    pub restart: String,
    /// Keys that detach from `run -it`, leaving the container running
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    #[serde(default)]
    pub detach_keys: String,
    /// Hostname inside the container (default: the image name)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set an environment variable (K=V)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines)
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// USER[:GROUP] by name or number
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Bind mount HOST:CTR[:ro]
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Mount a fresh tmpfs: PATH[:size=SIZE,mode=MODE,ro,noexec] (default size 1g)
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// size=SIZE: the tmpfs that holds an unnamed container's writes (default 4g)
    #[arg(long)]
    pub storage_opt: Vec<String>,
    /// Memory limit (e.g. 512m, 2g)
    #[arg(long)]
    pub memory: Option<String>,
    /// Maximum number of processes (default 2048; -1: no limit)
    #[arg(long, allow_negative_numbers = true)]
    pub pids: Option<i64>,
    /// CPU limit in cores (e.g. 0.5)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Parent cgroup for the container's cgroup
    #[arg(long, default_value = "locker")]
    pub cgroup_parent: String,
    /// Network: private (default: own namespace, NAT out), host, none (loopback only),
    /// container:NAME (share another's), or a network made by `locker network create`
    #[arg(long, alias = "network", default_value = "private")]
    pub net: String,
    /// Publish a port: [HOSTIP:]HOSTPORT:CTRPORT[/tcp|/udp] (HOSTIP default 0.0.0.0)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// A name server for the container's resolv.conf (repeatable)
    #[arg(long)]
    pub dns: Vec<String>,
    /// An /etc/hosts line NAME:IP (repeatable)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Mount the root filesystem read-only (no upper layer)
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Override an OCI image's Entrypoint (an empty string clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Image name or alias
    pub image: String,
    /// Command and arguments (default: the image's Entrypoint + Cmd; else /bin/bash, else /bin/sh)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
