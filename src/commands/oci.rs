//! `locker oci …` and `locker-runtime …`: runc's command line (the OCI runtime
//! interface containerd, CRI-O, podman's conmon and runtime-tools drive), parsed here
//! and handed to `oci::Runtime`.
//!
//! runc parses with urfave/cli, which takes long options with one dash too
//! (`-bundle`, `-pid-file`); `normalise` rewrites those to clap's two dashes, up to
//! the container's command of `exec` (which is never touched). Errors are one line on
//! stderr and, with `--log FILE`, one more in the log file (`--log-format json`: the
//! `{"level","msg","time"}` object containerd's shim reads back).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exit::ExitStatus;
use crate::oci::{self, CreateOpts, OciError, Runtime};

#[derive(Parser, Debug)]
#[command(
    name = "locker-runtime",
    version,
    about = "locker as an OCI runtime: runc's command line over a bundle"
)]
pub(crate) struct OciCli {
    /// Directory of the runtime's state
    #[arg(long, default_value = "/run/locker-runtime")]
    pub root: PathBuf,
    /// Also write errors to this file
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Format of --log: text or json
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Accepted for runc compatibility (errors are always reported)
    #[arg(long)]
    pub debug: bool,
    /// Place cgroups through systemd (not supported: refused)
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// runc's rootless switch: only `auto` or `false` (locker decides by the config)
    #[arg(long)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: OciCommand,
}

#[derive(Subcommand, Debug)]
pub(crate) enum OciCommand {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
    /// Run the created container's process
    Start(IdArg),
    /// Print the container's OCI state as JSON
    State(IdArg),
    /// Send a signal to the container's process (default SIGTERM)
    Kill(KillArgs),
    /// Remove a stopped container (--force: running too)
    Delete(DeleteArgs),
    /// Create, start and wait for a container; delete it after; exit with its status
    Run(CreateArgs),
    /// List containers
    List(ListArgs),
    /// Print the OCI features document
    Features,
    /// Write a default config.json into the bundle directory
    Spec(SpecArgs),
    /// List the container's processes
    Ps(PsArgs),
    /// Freeze the container's processes
    Pause(IdArg),
    /// Thaw the container's processes
    Resume(IdArg),
    /// Run a process in the running container
    Exec(ExecArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// The bundle (its config.json and root)
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write PID 1's host pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to receive the terminal's master (SCM_RIGHTS)
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// chroot instead of pivot_root (a root on a ramfs)
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: the container gets a new session keyring always
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass the caller's fds 3..3+N to the command, as runc does
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// run: return once the container runs (create, then start)
    #[arg(long, short = 'd')]
    pub detach: bool,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct IdArg {
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct KillArgs {
    /// Signal every process of the container
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// A name (TERM, SIGKILL) or a number
    #[arg(default_value = "TERM")]
    pub signal: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Kill a running container first
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// table or json
    #[arg(long, short = 'f', default_value = "table")]
    pub format: String,
    /// Ids only
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PsArgs {
    /// table or json
    #[arg(long, short = 'f', default_value = "table")]
    pub format: String,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct SpecArgs {
    /// Where config.json is written
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// A config for a rootless container (user namespace, the caller's ids mapped)
    #[arg(long)]
    pub rootless: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExecArgs {
    /// The process as OCI process JSON (instead of ARGS)
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Return once the process runs (the caller's subreaper waits for it)
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's host pid here
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to receive the terminal's master (SCM_RIGHTS)
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// A terminal for the process
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<String>,
    /// K=V, repeatable
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// UID[:GID]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Pass the caller's fds 3..3+N to the process, as runc does
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The most fds `--preserve-fds` passes (3+N must stay a valid descriptor number).
const MAX_PRESERVED_FDS: u32 = 1 << 20;

/// runc's long option names, which it also takes with one dash.
const LONG: &[&str] = &[
    "root",
    "log",
    "log-format",
    "debug",
    "systemd-cgroup",
    "rootless",
    "bundle",
    "pid-file",
    "console-socket",
    "no-pivot",
    "no-new-keyring",
    "preserve-fds",
    "detach",
    "force",
    "all",
    "format",
    "quiet",
    "process",
    "tty",
    "cwd",
    "env",
    "user",
];

/// `-bundle x` -> `--bundle x` (and `-bundle=x`), up to `exec`'s container id.
pub(crate) fn normalise(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut exec = false;
    let mut positional = 0;
    let mut takes_value = false;
    for a in args {
        let s = a.to_string_lossy().into_owned();
        if exec && positional >= 1 {
            out.push(a);
            continue;
        }
        if s == "exec" && positional == 0 {
            exec = true;
            out.push(a);
            continue;
        }
        if let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-')) {
            let name = body.split('=').next().unwrap_or(body);
            if LONG.contains(&name) {
                takes_value = !body.contains('=')
                    && [
                        "root",
                        "log",
                        "log-format",
                        "bundle",
                        "pid-file",
                        "console-socket",
                        "preserve-fds",
                        "format",
                        "process",
                        "cwd",
                        "env",
                        "user",
                        "rootless",
                    ]
                    .contains(&name);
                out.push(format!("-{s}").into());
                continue;
            }
        }
        if let Some(long) = s.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            takes_value = !s.contains('=')
                && [
                    "root",
                    "log",
                    "log-format",
                    "bundle",
                    "pid-file",
                    "console-socket",
                    "preserve-fds",
                    "format",
                    "process",
                    "cwd",
                    "env",
                    "user",
                    "rootless",
                ]
                .contains(&name);
        } else if takes_value {
            takes_value = false;
        } else if !s.starts_with('-') && exec {
            positional += 1;
        }
        out.push(a);
    }
    out
}

/// Entry point: `args` without the program name (and without `oci`).
pub(crate) fn main(args: Vec<OsString>) -> ExitStatus {
    let mut argv = vec![OsString::from("locker-runtime")];
    argv.extend(normalise(args));
    let cli = match OciCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitStatus::Success,
                _ => ExitStatus::Failure,
            };
        }
    };
    let (log, json) = (cli.log.clone(), cli.log_format == "json");
    match dispatch(cli) {
        Ok(s) => s,
        Err(e) => {
            let line = crate::one_line(&e);
            eprintln!("locker: {line}");
            if let Some(p) = log {
                log_error(&p, json, &line);
            }
            e.downcast_ref::<OciError>()
                .map_or(ExitStatus::Failure, OciError::exit_status)
        }
    }
}

fn log_error(path: &std::path::Path, json: bool, msg: &str) {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level=error msg={msg:?}")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn dispatch(cli: OciCli) -> anyhow::Result<ExitStatus> {
    if cli.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported: locker places cgroups itself (use the cgroupfs driver: SystemdCgroup = false)");
    }
    if cli.log_format != "text" && cli.log_format != "json" {
        anyhow::bail!(
            "unknown --log-format {:?}: use text or json",
            cli.log_format
        );
    }
    // fds 3..3+N are the caller's to pass on: a gap among them is held by /dev/null
    // before anything here opens a descriptor, so none of locker's own lands there
    // (and crosses into the container).
    let preserved = match &cli.command {
        OciCommand::Create(a) | OciCommand::Run(a) => a.preserve_fds,
        OciCommand::Exec(a) => a.preserve_fds,
        _ => 0,
    };
    if preserved > MAX_PRESERVED_FDS {
        anyhow::bail!("--preserve-fds {preserved}: at most {MAX_PRESERVED_FDS}");
    }
    crate::run::sys::hold_fd_gaps(3, 3 + preserved as i32).map_err(|e| {
        anyhow::anyhow!(
            "--preserve-fds {preserved}: hold fds 3..{}: {e}",
            3 + preserved
        )
    })?;
    let rt = Runtime {
        root: cli.root.clone(),
    };
    let ok = |r: Result<(), OciError>| r.map(|()| ExitStatus::Success).map_err(Into::into);
    match cli.command {
        OciCommand::Create(a) => {
            let o = create_opts(&a)?;
            rt.create(&a.id, &a.bundle, &o)?;
            Ok(ExitStatus::Success)
        }
        OciCommand::Run(a) => {
            let o = create_opts(&a)?;
            if a.detach {
                return ok(rt.run_detached(&a.id, &a.bundle, &o));
            }
            Ok(ExitStatus::Code(rt.run(&a.id, &a.bundle, &o)?))
        }
        OciCommand::Start(a) => ok(rt.start(&a.id)),
        OciCommand::State(a) => {
            let st = rt.state(&a.id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
            Ok(ExitStatus::Success)
        }
        OciCommand::Kill(a) => {
            let sig = oci::parse_signal(&a.signal)?;
            ok(rt.kill(&a.id, sig, a.all))
        }
        OciCommand::Delete(a) => ok(rt.delete(&a.id, a.force)),
        OciCommand::List(a) => {
            let all = rt.list();
            if a.quiet {
                for s in &all {
                    println!("{}", s.id);
                }
            } else if a.format == "json" {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<10} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                );
                for s in &all {
                    println!(
                        "{:<24} {:<8} {:<10} {:<40} {}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created
                    );
                }
            }
            Ok(ExitStatus::Success)
        }
        OciCommand::Ps(a) => {
            let pids = rt.ps(&a.id)?;
            if a.format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(ExitStatus::Success)
        }
        OciCommand::Pause(a) => ok(rt.freeze(&a.id, true)),
        OciCommand::Resume(a) => ok(rt.freeze(&a.id, false)),
        OciCommand::Features => {
            println!("{}", serde_json::to_string_pretty(&oci::features())?);
            Ok(ExitStatus::Success)
        }
        OciCommand::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                anyhow::bail!("{} exists already; remove it first", path.display());
            }
            let text = serde_json::to_string_pretty(&oci::default_spec(a.rootless)?)?;
            std::fs::write(&path, text + "\n")
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
            Ok(ExitStatus::Success)
        }
        OciCommand::Exec(a) => {
            let o = oci::ExecOpts {
                process: a.process.clone(),
                args: a.args.clone(),
                tty: a.tty,
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                preserve_fds: a.preserve_fds,
            };
            Ok(ExitStatus::Code(rt.exec(&a.id, &o)?))
        }
    }
}

fn create_opts(a: &CreateArgs) -> anyhow::Result<CreateOpts> {
    Ok(CreateOpts {
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[&str]) -> Vec<String> {
        normalise(v.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_options() {
        assert_eq!(
            norm(&[
                "-root",
                "/r",
                "create",
                "-bundle",
                "/b",
                "-pid-file=/p",
                "id"
            ]),
            [
                "--root",
                "/r",
                "create",
                "--bundle",
                "/b",
                "--pid-file=/p",
                "id"
            ]
        );
        // exec's command is the container's: never rewritten.
        assert_eq!(
            norm(&["exec", "-tty", "id", "ls", "-all", "-format"]),
            ["exec", "--tty", "id", "ls", "-all", "-format"]
        );
        assert_eq!(
            norm(&["exec", "--cwd", "/tmp", "id", "sh", "-cwd"]),
            ["exec", "--cwd", "/tmp", "id", "sh", "-cwd"]
        );
        // Short options stay.
        assert_eq!(norm(&["kill", "-a", "id", "9"]), ["kill", "-a", "id", "9"]);
    }

    #[test]
    fn options_after_the_id() {
        let c = OciCli::try_parse_from(["x", "create", "id", "--bundle", "/b"]).unwrap();
        match c.command {
            OciCommand::Create(a) => {
                assert_eq!(a.id, "id");
                assert_eq!(a.bundle, PathBuf::from("/b"));
            }
            _ => panic!(),
        }
        let c = OciCli::try_parse_from(["x", "kill", "id", "KILL"]).unwrap();
        assert!(matches!(c.command, OciCommand::Kill(k) if k.signal == "KILL"));
    }
}
