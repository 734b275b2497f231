//! The container commands at the CLI edge: run (foreground, `-d`, `-it`), ps, exec,
//! stop, rm, and the detached containers' logs, attach, start, restart, wait, inspect.
//! Each turns clap's arguments into the typed run spec (or a name) and prints the
//! result.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{AttachArgs, ExecArgs, LogsArgs, RmArgs, RunArgs, SecurityArgs, StopArgs};
use crate::run::cgroups::Limits;
use crate::run::monitor::{self, Found};
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
    spec.limits_asked =
        args.memory.is_some() || args.cpus.is_some() || args.pids.is_some_and(|p| p != -1);
    spec.cgroup_parent = args.cgroup_parent.clone();
    security(&args.security, &mut spec)?;
    Ok(spec)
}

/// The protections, loosened only by name: `--privileged`, `--cap-add`,
/// `--security-opt seccomp=unconfined|PROFILE.json`.
fn security(a: &SecurityArgs, spec: &mut Spec) -> Result<(), RunError> {
    spec.userns_auto = match a.userns.as_deref() {
        None | Some("host") => false,
        Some("auto") if crate::run::userns::rootless() || !nix::unistd::geteuid().is_root() => {
            return Err(RunError::Usage(
                "--userns auto is for root; an ordinary user's containers have a user namespace already".into(),
            ))
        }
        Some("auto") if spec.name.is_some() => {
            return Err(RunError::Usage(
                "--userns auto with --name: not supported, a named container's files would change owner with the next run's id range; drop --name (a detached container needs none) or --userns".into(),
            ))
        }
        Some("auto") => true,
        Some(other) => {
            return Err(RunError::Usage(format!(
                "bad --userns {other:?}: use auto or host"
            )))
        }
    };
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

/// `locker run`: returns the command's exit code. `-d`, and `-it` (a session one can
/// detach from), go through a monitor; everything else is the plain foreground path.
pub(crate) fn run(root: &Path, args: &RunArgs, image: Resolved) -> anyhow::Result<u8> {
    let ctx = || format!("run {}", args.image);
    let mut spec = run_spec(root, args, image).with_context(ctx)?;
    if !(args.detach || args.tty && args.interactive) {
        return run::run(root, &spec).with_context(ctx);
    }
    let id = hex::encode(
        run::sys::random_bytes::<6>()
            .map_err(|e| RunError::Sys("getrandom", nix::Error::from_raw(e)))
            .with_context(ctx)?,
    );
    let cfg = monitor::Config {
        id: id.clone(),
        key: args.name.clone().unwrap_or_else(|| id.clone()),
        name: args.name.clone(),
        image: args.image.clone(),
        created: state::now(),
        restart: args.restart.clone(),
        // An unnamed `run -it` is as throw-away as a foreground run.
        auto_remove: args.name.is_none() && !args.detach,
        tty: args.tty,
        stdin: args.interactive,
        create: serde_json::to_value(args)?,
    };
    monitor::Restart::parse(&args.restart).with_context(ctx)?;
    let keys = monitor::parse_detach_keys(&args.detach_keys).with_context(ctx)?;
    monitor::create(root, &cfg).with_context(ctx)?;
    spec.id = Some(id.clone());
    if args.detach {
        monitor::spawn(root, &cfg, &spec, None).with_context(ctx)?;
        println!("{id}");
        return Ok(0);
    }
    spec.winsize = run::tty::host_winsize().map(|w| (w.ws_row, w.ws_col));
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    monitor::spawn(root, &cfg, &spec, Some(theirs)).with_context(ctx)?;
    let code = monitor::session(ours, keys, args.interactive, args.tty).with_context(ctx)?;
    Ok(code.unwrap_or(0))
}

/// `locker start [-a] NAME`: the stored run arguments of `f`, with `image` resolved
/// again, started under a new monitor with the same id; `-a` attaches.
pub(crate) fn start(
    root: &Path,
    f: &Found,
    args: &RunArgs,
    image: Resolved,
    attach: Option<&str>,
) -> anyhow::Result<u8> {
    let ctx = || format!("start {}", f.config.key);
    if f.running() {
        return Err(RunError::Running(f.config.key.clone())).with_context(ctx);
    }
    let mut spec = run_spec(root, args, image).with_context(ctx)?;
    spec.id = Some(f.config.id.clone());
    monitor::create(root, &f.config).with_context(ctx)?;
    let Some(keys) = attach else {
        monitor::spawn(root, &f.config, &spec, None).with_context(ctx)?;
        return Ok(0);
    };
    let keys = monitor::parse_detach_keys(keys).with_context(ctx)?;
    if f.config.tty {
        spec.winsize = run::tty::host_winsize().map(|w| (w.ws_row, w.ws_col));
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    monitor::spawn(root, &f.config, &spec, Some(theirs)).with_context(ctx)?;
    let code = monitor::session(ours, keys, f.config.stdin, f.config.tty).with_context(ctx)?;
    Ok(code.unwrap_or(0))
}

/// `locker attach NAME`: returns the container's exit code, or 0 after detaching.
pub(crate) fn attach(root: &Path, a: &AttachArgs) -> anyhow::Result<u8> {
    let ctx = || format!("attach {}", a.name);
    let keys = monitor::parse_detach_keys(&a.detach_keys).with_context(ctx)?;
    let (f, sock) = monitor::connect(root, &a.name).with_context(ctx)?;
    let code = monitor::session(sock, keys, f.config.stdin && !a.no_stdin, f.config.tty)
        .with_context(ctx)?;
    Ok(code.unwrap_or(0))
}

/// `locker logs [-f] [--tail N] [-t] NAME`.
pub(crate) fn logs(root: &Path, a: &LogsArgs) -> anyhow::Result<()> {
    let o = monitor::LogOpts {
        follow: a.follow,
        tail: a.tail,
        timestamps: a.timestamps,
    };
    monitor::logs(
        root,
        &a.name,
        &o,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .with_context(|| format!("logs {}", a.name))
}

/// `locker wait NAME..`: prints each exit code.
pub(crate) fn wait(root: &Path, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        let code = monitor::wait(root, name).with_context(|| format!("wait {name}"))?;
        println!("{code}");
    }
    Ok(())
}

/// `locker inspect NAME..`: a JSON array, one object per container.
pub(crate) fn inspect(root: &Path, names: &[String]) -> anyhow::Result<()> {
    let _ = state::reap_stale(root);
    let mut out = Vec::new();
    for name in names {
        let running = state::read_states(root)
            .into_iter()
            .filter(State::running)
            .find(|s| s.name.as_deref() == Some(name.as_str()) || s.id == *name);
        let found = monitor::find(root, name);
        let meta = state::named_containers(root)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m);
        if found.is_none() && running.is_none() && meta.is_none() {
            return Err(RunError::NoContainer(name.clone()))
                .with_context(|| format!("inspect {name}"));
        }
        let status = match (&found, &running) {
            (Some(f), _) => serde_json::to_value(f.status())?,
            (None, Some(_)) => serde_json::json!({"status": "running"}),
            (None, None) => serde_json::json!({"status": "stopped"}),
        };
        let record = found.as_ref().map(|f| &f.config);
        out.push(serde_json::json!({
            "id": record.map(|c| c.id.clone()).or(running.as_ref().map(|s| s.id.clone())),
            "name": record.and_then(|c| c.name.clone()).or(meta.as_ref().map(|_| name.clone())),
            "image": record.map(|c| c.image.clone()).or(meta.as_ref().map(|m| m.image.clone())),
            "state": status,
            "config": record,
            "run": running,
            "dir": found.as_ref().map(|f| f.dir.clone()),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
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
    run::join::exec(root, &a.name, &process, None).with_context(ctx)
}

/// `locker stop [--time N] NAME..`: SIGTERM, then SIGKILL after N seconds (10); a
/// detached container is not restarted.
pub(crate) fn stop(root: &Path, a: &StopArgs) -> anyhow::Result<()> {
    for name in &a.names {
        stop_one(root, name, Duration::from_secs(a.time))
            .with_context(|| format!("stop {name}"))?;
    }
    Ok(())
}

fn stop_one(root: &Path, name: &str, grace: Duration) -> Result<(), RunError> {
    match monitor::find(root, name) {
        Some(f) if f.running() => monitor::stop(root, &f, grace),
        _ => state::stop(root, name, grace),
    }
}

/// `locker restart NAME..` is `stop` then `start` (in dispatch).
pub(crate) fn stop_if_running(root: &Path, f: &Found, a: &StopArgs) -> anyhow::Result<()> {
    if f.running() {
        monitor::stop(root, f, Duration::from_secs(a.time))
            .with_context(|| format!("restart {}", f.config.key))?;
    }
    Ok(())
}

/// `locker rm [-f] NAME..`: deletes stopped containers (`-f`: stops them first).
pub(crate) fn rm(root: &Path, a: &RmArgs) -> anyhow::Result<()> {
    for name in &a.names {
        rm_one(root, name, a.force).with_context(|| format!("rm {name}"))?;
    }
    Ok(())
}

fn rm_one(root: &Path, name: &str, force: bool) -> Result<(), RunError> {
    let found = monitor::find(root, name);
    if force {
        match &found {
            Some(f) if f.running() => monitor::stop(root, f, Duration::ZERO)?,
            _ if state::find_running(root, name).is_some() => {
                state::stop(root, name, Duration::ZERO)?
            }
            _ => {}
        }
    }
    let key = match &found {
        Some(f) => {
            monitor::remove(f)?;
            f.config.key.clone()
        }
        None => name.to_string(),
    };
    if found.is_none()
        || state::containers_dir(root)
            .join(&key)
            .join("meta.json")
            .exists()
    {
        state::rm(root, &key)?;
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

/// `locker ps [-a] [--json]`: running containers, detached ones restarting, and with
/// `-a` the stopped named and detached ones with their last exit code.
pub(crate) fn ps(root: &Path, all: bool, json: bool) -> anyhow::Result<()> {
    let _ = state::reap_stale(root);
    monitor::reap(root);
    let mut running: Vec<State> = state::read_states(root)
        .into_iter()
        .filter(State::running)
        .collect();
    running.sort_by_key(|s| s.started);
    let is_running = |key: &str, id: &str| {
        running
            .iter()
            .any(|s| s.name.as_deref() == Some(key) || s.id == id)
    };
    // Detached containers not running now: restarting ones always, exited with -a.
    let records: Vec<(Found, monitor::Status)> = monitor::list(root)
        .into_iter()
        .filter(|f| !is_running(&f.config.key, &f.config.id))
        .map(|f| {
            let st = f.status();
            (f, st)
        })
        .filter(|(_, st)| all || st.status == "restarting")
        .collect();
    let stopped: Vec<(String, NamedMeta)> = if all {
        state::named_containers(root)
            .into_iter()
            .filter(|(n, _)| {
                !running.iter().any(|s| s.name.as_deref() == Some(n))
                    && !records.iter().any(|(f, _)| f.config.key == *n)
            })
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
                    "started": s.started, "status": "running", "exit_code": null})
            })
            .collect();
        rows.extend(records.iter().map(|(f, st)| {
            serde_json::json!({"id": f.config.id, "name": f.config.name,
            "image": f.config.image, "pid": null, "command": null, "started": st.started,
            "status": st.status, "exit_code": st.exit_code})
        }));
        rows.extend(stopped.iter().map(|(n, m)| serde_json::json!({"id": null, "name": n, "image": m.image, "pid": null, "command": null, "started": null, "status": "stopped", "exit_code": null})));
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<16} {:>8} {:<10} {:<16} COMMAND",
        "NAME", "IMAGE", "PID", "UP", "STATUS"
    )?;
    for s in &running {
        writeln!(
            out,
            "{:<16} {:<16} {:>8} {:<10} {:<16} {}",
            s.name.as_deref().unwrap_or(&s.id),
            s.image,
            s.pid,
            uptime(s.started),
            "running",
            s.command.join(" ")
        )?;
    }
    for (f, st) in &records {
        writeln!(
            out,
            "{:<16} {:<16} {:>8} {:<10} {:<16} -",
            f.config.key,
            f.config.image,
            "-",
            "-",
            st.show()
        )?;
    }
    for (n, m) in &stopped {
        writeln!(
            out,
            "{:<16} {:<16} {:>8} {:<10} {:<16} -",
            n, m.image, "-", "stopped", "stopped"
        )?;
    }
    Ok(())
}
