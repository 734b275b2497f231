//! The container commands at the CLI edge: run, ps, exec, stop, rm. Each turns clap's
//! arguments into the typed run spec (or a name) and prints the result.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{ExecArgs, RunArgs, SecurityArgs};
use crate::run::cgroups::Limits;
use crate::run::spec::{self, container_path};
use crate::run::state::{self, NamedMeta, State};
use crate::run::{self, seccomp, Net, Process, Root, RunError, Spec};
use crate::store::Resolved;

/// `locker run`'s flags as a spec for `image`.
pub(crate) fn run_spec(root: &Path, args: &RunArgs, image: Resolved) -> Result<Spec, RunError> {
    let config = image.config.clone();
    // An OCI reference is no hostname: its repository's last component is.
    let default_hostname = image.name.contains(['/', ':', '@']).then(|| {
        let repo = image.name.split(['@']).next().unwrap_or(&image.name);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let last = last.split(':').next().unwrap_or(last);
        let clean: String = last
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        clean.trim_matches('-').to_string()
    });
    let mut spec = Spec::new(image);
    spec.name = args.name.clone();
    spec.hostname = args
        .hostname
        .clone()
        .or(default_hostname.filter(|h| !h.is_empty()));
    spec.process = process(
        &args.command,
        &args.env,
        &args.env_file,
        args.workdir.as_deref(),
        args.user.clone(),
        args.tty,
        args.interactive,
    )?;
    if config.is_some() || args.entrypoint.is_some() {
        let config = config.unwrap_or_default();
        spec::apply_image_config(&mut spec.process, &config, args.entrypoint.as_deref())?;
    }
    if args.read_only {
        spec.root = Root::ReadOnly;
    }
    spec.mounts = args
        .volumes
        .iter()
        .map(|v| spec::parse_volume(v))
        .collect::<Result<_, _>>()?;
    for t in &args.tmpfs {
        spec.mounts.push(spec::parse_tmpfs(t)?);
    }
    for o in &args.storage_opt {
        match o.split_once('=') {
            Some(("size", v)) => spec.upper_size = spec::parse_size(v)?,
            _ => {
                return Err(RunError::Usage(format!(
                    "bad --storage-opt {o:?}: use size=SIZE"
                )))
            }
        }
    }
    spec.net = net_spec(root, &args.net, &args.publish)?;
    for d in &args.dns {
        spec.dns.push(d.parse().map_err(|_| {
            RunError::Usage(format!(
                "bad --dns {d:?}: use an IP address such as 192.0.2.53"
            ))
        })?);
    }
    for h in &args.add_host {
        let bad = || {
            RunError::Usage(format!(
                "bad --add-host {h:?}: use NAME:IP, e.g. db:10.0.0.5"
            ))
        };
        let (name, ip) = h.split_once(':').ok_or_else(bad)?;
        let ip = ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        spec.add_hosts.push((name.to_string(), ip));
    }
    if !spec.net.is_new() && !spec.dns.is_empty() {
        return Err(RunError::Usage(
            "--dns needs a network namespace of its own (not --net host or container:)".into(),
        ));
    }
    spec.resources = Limits {
        memory: args.memory.as_deref().map(spec::parse_size).transpose()?,
        pids: match args.pids {
            None => Limits::default().pids,
            Some(-1) => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => {
                return Err(RunError::Usage(format!(
                    "bad --pids {n}: use a positive number, or -1 for no limit"
                )))
            }
        },
        cpus: match args.cpus {
            Some(c) if !(c > 0.0 && c.is_finite()) => {
                return Err(RunError::Usage(format!("bad --cpus {c}: must be > 0")))
            }
            c => c,
        },
    };
    spec.cgroup_parent = args.cgroup_parent.clone();
    security(&args.security, &mut spec)?;
    Ok(spec)
}

/// The protections, loosened only by name: `--privileged`, `--cap-add`,
/// `--security-opt seccomp=unconfined|PROFILE.json`.
fn security(a: &SecurityArgs, spec: &mut Spec) -> Result<(), RunError> {
    let s = &mut spec.security;
    if a.privileged {
        s.capabilities = spec::ALL_CAPS;
        s.seccomp = None;
        s.masked_paths.clear();
        s.readonly_paths.clear();
    }
    s.capabilities = spec::apply_caps(s.capabilities, &a.cap_add, &a.cap_drop)?;
    for o in &a.security_opt {
        match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => s.seccomp = None,
            Some(("seccomp", path)) => {
                let profile = seccomp::load_profile(Path::new(path))?;
                for name in profile.unknown_syscalls() {
                    eprintln!("locker: warning: seccomp profile {path}: unknown syscall {name:?} skipped");
                }
                s.seccomp = Some(profile);
            }
            None if o == "no-new-privileges" => s.no_new_privileges = true,
            _ => {
                return Err(RunError::Usage(format!(
                    "bad --security-opt {o:?}: use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges"
                )))
            }
        }
    }
    if let Some(adj) = a.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(RunError::Usage(format!(
                "bad --oom-score-adj {adj}: use -1000 to 1000"
            )));
        }
        spec.process.oom_score_adj = adj;
    }
    for u in &a.ulimit {
        let r = spec::parse_ulimit(u)?;
        spec.process.rlimits.retain(|x| x.resource != r.resource);
        spec.process.rlimits.push(r);
    }
    Ok(())
}

/// The process section from flags `run` and `exec` share.
fn process(
    args: &[String],
    env: &[String],
    env_files: &[std::path::PathBuf],
    workdir: Option<&str>,
    user: Option<String>,
    terminal: bool,
    stdin: bool,
) -> Result<Process, RunError> {
    let files = env_files
        .iter()
        .map(|f| fs::read_to_string(f).map_err(crate::fs::path_error::io_err("read env file", f)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Process {
        args: args.to_vec(),
        oom_score_adj: 0,
        rlimits: spec::default_rlimits(spec::caller_nofile_hard()),
        env: spec::parse_env(&files, env, &|k| std::env::var(k).ok())?,
        cwd: workdir
            .map(|w| container_path(w).map(|p| format!("/{p}")))
            .transpose()?,
        user,
        terminal,
        stdin,
    })
}

/// `--net` and `-p` as the spec's network.
fn net_spec(root: &Path, net: &str, publish: &[String]) -> Result<Net, RunError> {
    let ports = publish
        .iter()
        .map(|p| run::net::PortMap::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = match net {
        "private" | "bridge" => Net::Bridge {
            network: run::net::Network::default_network(),
            ports,
        },
        "host" | "none" | "" => {
            if !ports.is_empty() {
                return Err(RunError::Usage(format!(
                    "-p needs a network of the container's own: --net {net} shares no ports (leave out --net, or use a named network)"
                )));
            }
            if net == "none" {
                Net::None
            } else if net == "host" {
                Net::Host
            } else {
                return Err(RunError::Usage(
                    "empty --net: use private, host, none, container:NAME or a network name".into(),
                ));
            }
        }
        other => match other.strip_prefix("container:") {
            Some(name) => {
                if !ports.is_empty() {
                    return Err(RunError::Usage(format!(
                        "-p with --net container:{name}: publish the ports on container {name} instead"
                    )));
                }
                Net::Container(name.to_string())
            }
            None => Net::Bridge {
                network: run::net::network::find(root, other)?,
                ports,
            },
        },
    };
    Ok(spec)
}

/// `locker run`: returns the command's exit code.
pub(crate) fn run(root: &Path, args: &RunArgs, image: Resolved) -> anyhow::Result<u8> {
    let spec = run_spec(root, args, image).with_context(|| format!("run {}", args.image))?;
    run::run(root, &spec).with_context(|| format!("run {}", args.image))
}

/// `locker exec NAME CMD..`: returns the command's exit code.
pub(crate) fn exec(root: &Path, a: &ExecArgs) -> anyhow::Result<u8> {
    let ctx = || format!("exec {}", a.name);
    let process = process(
        &a.command,
        &a.env,
        &[],
        a.workdir.as_deref(),
        a.user.clone(),
        a.tty,
        a.interactive,
    )
    .with_context(ctx)?;
    run::join::exec(root, &a.name, &process).with_context(ctx)
}

/// `locker stop NAME..`: SIGTERM, then SIGKILL after 10 s.
pub(crate) fn stop(root: &Path, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        state::stop(root, name, Duration::from_secs(10)).with_context(|| format!("stop {name}"))?;
    }
    Ok(())
}

/// `locker rm NAME..`: deletes stopped named containers.
pub(crate) fn rm(root: &Path, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        state::rm(root, name).with_context(|| format!("rm {name}"))?;
    }
    Ok(())
}

fn uptime(started: u64) -> String {
    let s = state::now().saturating_sub(started);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `locker ps [-a] [--json]`.
pub(crate) fn ps(root: &Path, all: bool, json: bool) -> anyhow::Result<()> {
    let _ = state::reap_stale(root);
    let mut running: Vec<State> = state::read_states(root)
        .into_iter()
        .filter(State::running)
        .collect();
    running.sort_by_key(|s| s.started);
    let stopped: Vec<(String, NamedMeta)> = if all {
        state::named_containers(root)
            .into_iter()
            .filter(|(n, _)| !running.iter().any(|s| s.name.as_deref() == Some(n)))
            .collect()
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if json {
        let mut rows: Vec<serde_json::Value> = running
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.id, "name": s.name, "image": s.image, "pid": s.pid, "command": s.command,
                    "started": s.started, "status": "running"})
            })
            .collect();
        rows.extend(stopped.iter().map(|(n, m)| serde_json::json!({"id": null, "name": n, "image": m.image, "pid": null, "command": null, "started": null, "status": "stopped"})));
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<16} {:>8} {:<10} COMMAND",
        "NAME", "IMAGE", "PID", "UP"
    )?;
    for s in &running {
        writeln!(
            out,
            "{:<16} {:<16} {:>8} {:<10} {}",
            s.name.as_deref().unwrap_or(&s.id),
            s.image,
            s.pid,
            uptime(s.started),
            s.command.join(" ")
        )?;
    }
    for (n, m) in &stopped {
        writeln!(
            out,
            "{:<16} {:<16} {:>8} {:<10} -",
            n, m.image, "-", "stopped"
        )?;
    }
    Ok(())
}
