//! Detached containers (src/run/monitor.rs): `run -d`, logs, attach and the detach
//! keys, `run -it` sessions one leaves running, start/restart, restart policies, wait,
//! inspect, stop --time, rm -f, and what a killed monitor leaves for `gc`. Terminals
//! are real ptys (a pair made by the test, as a terminal emulator does); every wait is
//! bounded and waits for a condition. Each container is removed by a guard (`rm -f`),
//! and `Ctx` then checks that no cgroup, mount or state file is left.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::{wait_child, wait_line};
use crate::run::Ctx;
use crate::stdio::{Pty, Session};

const LIMIT: Duration = Duration::from_secs(30);

/// A detached container, removed (`rm -f`) when the test ends, passing or not.
struct Detached<'a> {
    c: &'a Ctx,
    name: String,
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.c.l.run(&["rm", "-f", &self.name]);
    }
}

fn detached<'a>(c: &'a Ctx, name: &str) -> Detached<'a> {
    Detached {
        c,
        name: name.to_string(),
    }
}

/// Polls `cond` until it holds, failing after `LIMIT` with `what`.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {LIMIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn inspect(c: &Ctx, name: &str) -> serde_json::Value {
    let js: serde_json::Value = serde_json::from_str(&c.l.ok(&["inspect", name])).unwrap();
    js[0].clone()
}

fn status(c: &Ctx, name: &str) -> String {
    inspect(c, name)["state"]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn record(c: &Ctx, name: &str) -> PathBuf {
    c.l.root().join("containers").join(name)
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// `run -d` prints the id and returns at once; `logs -f` follows the output live and
/// ends with the container; `logs` (also --tail, --timestamps, stderr apart) reads it
/// after the exit; `ps -a`, `wait` and `inspect` tell the exit code; `rm` removes it.
#[test]
fn run_d_logs_follow_and_after_exit() {
    let c = Ctx::new();
    let script = "i=0; while [ $i -lt 3 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; \
        while [ ! -e /go ]; do sleep 0.05; done; echo done; exit 3";
    let _g = detached(&c, "loop");
    let out =
        c.l.ok(&c.args(&["-d", "--name", "loop"], &["sh", "-c", script]));
    let id = out.trim();
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
    let ps = c.l.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("loop ") && l.contains("running")),
        "{ps}"
    );
    let mut follow =
        c.l.command(&["logs", "-f", "loop"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let lines = crate::harness::lines_where(follow.stdout.take().unwrap(), |_| true);
    let mut seen = Vec::new();
    let mut next = || {
        let l = lines.recv_timeout(LIMIT).expect("a line from logs -f");
        seen.push(l.clone());
        l
    };
    assert_eq!(next(), "line0");
    assert_eq!(next(), "line1");
    assert_eq!(next(), "line2");
    // Now it waits for /go: what logs -f prints next comes live.
    c.l.ok(&["exec", "loop", "touch", "/go"]);
    assert_eq!(next(), "done");
    let st = wait_child(&mut follow, LIMIT);
    assert!(st.success(), "logs -f ends with the container");
    assert_eq!(c.l.ok(&["wait", "loop"]).trim(), "3");
    assert_eq!(c.l.ok(&["wait", id]).trim(), "3", "by id too");
    let r = c.l.run(&["logs", "loop"]);
    assert_eq!(r.stdout, "line0\nline1\nline2\ndone\n", "{}", r.dump());
    assert_eq!(r.stderr, "oops\n", "stderr apart");
    // --tail counts the lines of both streams (oops went to stderr).
    assert_eq!(c.l.ok(&["logs", "--tail", "3", "loop"]), "line2\ndone\n");
    let ts = c.l.ok(&["logs", "--timestamps", "loop"]);
    for l in ts.lines() {
        let (t, _) = l.split_once(' ').unwrap();
        assert!(
            t.len() > 20 && t.ends_with('Z') && t.starts_with("20"),
            "{ts}"
        );
    }
    let ps = c.l.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("loop ") && l.contains("exited (3)")),
        "{ps}"
    );
    assert!(
        !c.l.ok(&["ps"]).contains("loop"),
        "not running: not in plain ps"
    );
    let js = inspect(&c, "loop");
    assert_eq!(js["id"], id);
    assert_eq!(js["state"]["exit_code"], 3);
    assert_eq!(js["config"]["create"]["command"][0], "sh");
    c.l.ok(&["rm", "loop"]);
    assert!(!record(&c, "loop").exists());
    c.l.fails(&["logs", "loop"]);
}

/// An unnamed `run -d` is found by its id; a command that is not there is 127 at
/// once and leaves no record; a bad --restart is a one-line usage error.
#[test]
fn run_d_unnamed_and_start_errors() {
    let c = Ctx::new();
    let id = c.l.ok(&c.args(&["-d"], &["sh", "-c", "echo hello"]));
    let id = id.trim().to_string();
    let _g = detached(&c, &id);
    assert_eq!(c.l.ok(&["wait", &id]).trim(), "0");
    assert_eq!(c.l.ok(&["logs", &id]), "hello\n");
    let r = c.code(&["-d"], &["nosuch-command"], 127);
    assert!(r.stderr.contains("command not found"), "{}", r.dump());
    assert_eq!(r.stdout, "", "no id printed");
    let left: Vec<_> = std::fs::read_dir(c.l.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from(&id)], "{left:?}");
    c.l.fails(&c.args(&["-d", "--restart", "sometimes"], &["true"]));
    c.l.ok(&["rm", &id]);
}

/// `run -it` under a real terminal: resize repeatedly while typing; Ctrl-C and Ctrl-Z
/// reach the shell's jobs; Ctrl-P Ctrl-Q detaches (the container goes on); `attach`
/// from another terminal is the same shell (its variables, its $$); custom
/// --detach-keys; `exit 3` ends attach with 3 and leaves nothing behind.
#[test]
fn detach_and_attach_the_same_shell() {
    let c = Ctx::new();
    let _g = detached(&c, "dev");
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&c.args(&["--name", "dev", "-it"], &["sh"]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut client = Session::start(cmd);
    let locker = nix::unistd::Pid::from_raw(client.0.id() as i32);
    let mut m = pty.master.try_clone().unwrap();
    m.write_all(b"stty size\n").unwrap();
    out.line("24 80");
    for i in 0..4u16 {
        let (rows, cols) = (30 + i, 90 + 5 * i);
        pty.resize(rows, cols);
        nix::sys::signal::kill(locker, nix::sys::signal::SIGWINCH).unwrap();
        m.write_all(b"stty size\n").unwrap();
        out.line(&format!("{rows} {cols}"));
    }
    // Ctrl-C interrupts the foreground job; Ctrl-Z stops it (job control).
    m.write_all(b"sh -c 'echo started; exec sleep 100'\n")
        .unwrap();
    out.line("started");
    m.write_all(b"\x03").unwrap();
    m.write_all(b"echo rc=$?\n").unwrap();
    out.line("rc=130");
    m.write_all(b"sh -c 'echo zzz; exec sleep 200'\n").unwrap();
    out.line("zzz");
    m.write_all(b"\x1a").unwrap();
    out.contains("Stopped");
    m.write_all(b"kill -9 %1; echo jobs-done\n").unwrap();
    out.line("jobs-done");
    m.write_all(b"MARK=kept-$$; echo set-$MARK\n").unwrap();
    out.contains("set-kept-");
    // Detach: the client ends 0, the container keeps running.
    m.write_all(b"\x10\x11").unwrap();
    assert_eq!(client.wait(), Some(0), "{}", out.seen);
    assert_eq!(status(&c, "dev"), "running");

    let pty2 = Pty::new(50, 132);
    let mut cmd = c.l.command(&["attach", "--detach-keys", "ctrl-a,d", "dev"]);
    pty2.attach(&mut cmd);
    let mut out2 = pty2.output();
    let mut again = Session::start(cmd);
    let mut m2 = pty2.master.try_clone().unwrap();
    m2.write_all(b"echo mark=$MARK; stty size\n").unwrap();
    out2.contains("mark=kept-");
    out2.line("50 132");
    // Ctrl-P Ctrl-Q is not the key here: it is typed into the shell, harmlessly.
    m2.write_all(b"\x01d").unwrap();
    assert_eq!(again.wait(), Some(0), "{}", out2.seen);
    assert_eq!(status(&c, "dev"), "running");

    let pty3 = Pty::new(24, 80);
    let mut cmd = c.l.command(&["attach", "dev"]);
    pty3.attach(&mut cmd);
    let mut out3 = pty3.output();
    let mut last = Session::start(cmd);
    let mut m3 = pty3.master.try_clone().unwrap();
    m3.write_all(b"echo still-$MARK\n").unwrap();
    out3.contains("still-kept-");
    m3.write_all(b"exit 3\n").unwrap();
    assert_eq!(last.wait(), Some(3), "{}", out3.seen);
    assert_eq!(c.l.ok(&["wait", "dev"]).trim(), "3");
}

/// An unnamed `run -it` is as throw-away as a foreground run: once it exits, no record.
#[test]
fn unnamed_run_it_leaves_no_record() {
    let c = Ctx::new();
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&c.args(&["-it"], &["sh"]));
    pty.attach(&mut cmd);
    let mut out = pty.output();
    let mut client = Session::start(cmd);
    let mut m = pty.master.try_clone().unwrap();
    m.write_all(b"echo in-$((40+2))\n").unwrap();
    out.line("in-42");
    m.write_all(b"exit 5\n").unwrap();
    assert_eq!(client.wait(), Some(5));
    let left: Vec<_> = std::fs::read_dir(c.l.root().join("containers"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A slow terminal and a flood of output: nothing is lost, the session answers after.
#[test]
fn flood_to_a_slow_terminal_then_typing() {
    let c = Ctx::new();
    let pty = Pty::new(24, 80);
    let mut cmd = c.l.command(&c.args(&["-it"], &["sh"]));
    pty.attach(&mut cmd);
    let mut client = Session::start(cmd);
    let mut m = pty.master.try_clone().unwrap();
    m.write_all(b"seq 1 60000; echo flood-end\n").unwrap();
    // The terminal reads slowly at first (small reads with pauses: the relay must
    // wait for it, never drop or freeze), then at full speed.
    let mut r = pty.master.try_clone().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    // (The terminal's echo of the command line has `echo flood-end`.)
    while !String::from_utf8_lossy(&seen).contains("\nflood-end\r\n") {
        assert!(Instant::now() < deadline, "flood not through");
        let n = std::io::Read::read(&mut r, &mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads < 50 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let text = String::from_utf8_lossy(&seen);
    let nums: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.bytes().all(|b| b.is_ascii_digit()) && !l.is_empty())
        .collect();
    assert_eq!(nums.len(), 60000, "every line");
    assert_eq!(nums[59999], "60000");
    let mut out = pty.output();
    m.write_all(b"echo alive\n").unwrap();
    out.line("alive");
    m.write_all(b"exit\n").unwrap();
    assert_eq!(client.wait(), Some(0));
}

/// A detached flood goes whole into the log.
#[test]
fn detached_flood_is_logged_whole() {
    let c = Ctx::new();
    let _g = detached(&c, "flood");
    c.l.ok(&c.args(&["-d", "--name", "flood"], &["seq", "1", "100000"]));
    assert_eq!(c.l.ok(&["wait", "flood"]).trim(), "0");
    let log = c.l.ok(&["logs", "flood"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 100000);
    assert_eq!(lines[99999], "100000");
    assert_eq!(c.l.ok(&["logs", "--tail", "1", "flood"]), "100000\n");
}

/// `start` runs a stopped container's command again over its kept files; `start -a`
/// shows the output and returns the code; `restart` of a running one stops it first.
#[test]
fn start_keeps_files_and_runs_its_command() {
    let c = Ctx::new();
    let _g = detached(&c, "st");
    let script = "echo run >> /count; echo n=$(wc -l < /count)";
    c.l.ok(&c.args(&["-d", "--name", "st"], &["sh", "-c", script]));
    assert_eq!(c.l.ok(&["wait", "st"]).trim(), "0");
    c.l.ok(&["start", "st"]);
    assert_eq!(c.l.ok(&["wait", "st"]).trim(), "0");
    assert_eq!(c.l.ok(&["logs", "st"]), "n=1\nn=2\n");
    assert_eq!(c.l.ok(&["start", "-a", "st"]), "n=3\n");
    assert!(inspect(&c, "st")["id"].is_string());

    let _s = detached(&c, "svc");
    let svc = "echo up; while true; do sleep 0.1; done";
    c.l.ok(&c.args(&["-d", "--name", "svc"], &["sh", "-c", svc]));
    let pid1 = || inspect(&c, "svc")["state"]["pid"].as_i64().unwrap_or(0);
    until("svc running", || pid1() > 0);
    let first = pid1();
    c.l.fails(&["start", "svc"]);
    c.l.ok(&["restart", "--time", "1", "svc"]);
    until("svc running again", || pid1() > 0 && pid1() != first);
    until("two runs logged", || c.l.ok(&["logs", "svc"]) == "up\nup\n");
    c.l.ok(&["stop", "svc"]);
    assert_eq!(status(&c, "svc"), "exited");
}

/// `--restart on-failure:3` restarts a failing command exactly three times (four runs),
/// with the back-off; `--restart always` goes on until `stop`, which is final.
#[test]
fn restart_on_failure_3_restarts_exactly_three_times() {
    let c = Ctx::new();
    let _g = detached(&c, "flaky");
    c.l.ok(&c.args(
        &["-d", "--name", "flaky", "--restart", "on-failure:3"],
        &["sh", "-c", "echo try; exit 1"],
    ));
    assert_eq!(c.l.ok(&["wait", "flaky"]).trim(), "1");
    assert_eq!(c.l.ok(&["logs", "flaky"]), "try\ntry\ntry\ntry\n");
    let js = inspect(&c, "flaky");
    assert_eq!(js["state"]["restarts"], 3, "{js}");
    assert_eq!(js["state"]["status"], "exited");

    // on-failure does not restart a success.
    let _o = detached(&c, "fine");
    c.l.ok(&c.args(
        &["-d", "--name", "fine", "--restart", "on-failure"],
        &["sh", "-c", "echo once"],
    ));
    assert_eq!(c.l.ok(&["wait", "fine"]).trim(), "0");
    assert_eq!(c.l.ok(&["logs", "fine"]), "once\n");

    let _a = detached(&c, "always");
    c.l.ok(&c.args(
        &["-d", "--name", "always", "--restart", "always"],
        &["sh", "-c", "echo again; exit 0"],
    ));
    until("restarted twice", || {
        inspect(&c, "always")["state"]["restarts"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    c.l.ok(&["stop", "always"]);
    let js = inspect(&c, "always");
    assert_eq!(js["state"]["status"], "exited", "{js}");
    let n = js["state"]["restarts"].as_u64().unwrap();
    let logged = c.l.ok(&["logs", "always"]).lines().count() as u64;
    assert!(
        logged == n || logged == n + 1,
        "{logged} runs, {n} restarts"
    );
}

/// `stop --time 1` on a command that ignores SIGTERM: SIGKILL after about a second
/// (137); `rm -f` stops and removes a running one at once.
#[test]
fn stop_time_and_rm_f() {
    let c = Ctx::new();
    let _g = detached(&c, "stubborn");
    c.l.ok(&c.args(
        &["-d", "--name", "stubborn"],
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    ));
    until("ready", || c.l.ok(&["logs", "stubborn"]) == "ready\n");
    let t = Instant::now();
    c.l.ok(&["stop", "--time", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(c.l.ok(&["wait", "stubborn"]).trim(), "137");

    c.l.ok(&c.args(&["-d", "--name", "gone"], &["sleep", "1000"]));
    let _h = detached(&c, "gone");
    c.l.fails(&["rm", "gone"]);
    c.l.ok(&["rm", "-f", "gone"]);
    assert!(!record(&c, "gone").exists());
    assert!(!c.l.ok(&["ps", "-a"]).contains("gone"));
}

/// SIGKILL of a monitor: its container dies with it (PDEATHSIG); `ps -a` says exited;
/// `gc` removes the cgroups, mount point and state it left (Ctx checks, at the end,
/// that nothing is left on the host).
#[test]
fn sigkill_of_the_monitor_then_gc_leaves_nothing() {
    let c = Ctx::new();
    let _g = detached(&c, "victim");
    c.l.ok(&c.args(
        &["-d", "--name", "victim"],
        &["sh", "-c", "sleep 1000 & echo ready; wait"],
    ));
    until("ready", || c.l.ok(&["logs", "victim"]) == "ready\n");
    let js = inspect(&c, "victim");
    let monitor = js["state"]["monitor_pid"].as_i64().unwrap() as i32;
    let pid1 = js["state"]["pid"].as_i64().unwrap() as i32;
    assert!(alive(monitor) && alive(pid1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    until("PID 1 dies with its monitor", || !alive(pid1));
    assert!(!c.container_cgroups().is_empty(), "left for gc to find");
    c.l.ok(&["gc"]);
    assert!(c.container_cgroups().is_empty(), "gc removed the cgroups");
    let left: Vec<_> = std::fs::read_dir(c.l.root().join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!record(&c, "victim").join("attach.sock").exists());
    let ps = c.l.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("victim ") && l.contains("exited")),
        "{ps}"
    );
    c.l.ok(&["rm", "victim"]);
}

/// `run -d -i`: stdin through the monitor; `attach --no-stdin` only watches.
#[test]
fn attach_pipes_without_a_terminal() {
    let c = Ctx::new();
    let _g = detached(&c, "cat");
    c.l.ok(&c.args(
        &["-d", "-i", "--name", "cat"],
        &["sh", "-c", "echo ready; cat"],
    ));
    let mut a =
        c.l.command(&["attach", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let rx = wait_line(a.stdout.take().unwrap(), "echoed");
    a.stdin.take().unwrap().write_all(b"echoed\n").unwrap();
    rx.recv_timeout(LIMIT).expect("cat answers through attach");
    // Closing attach's stdin ends the container's stdin: cat exits 0.
    assert_eq!(wait_child(&mut a, LIMIT).code(), Some(0));
    assert_eq!(c.l.ok(&["wait", "cat"]).trim(), "0");
    assert_eq!(c.l.ok(&["logs", "cat"]), "ready\nechoed\n");
}

/// Attack: run locker from a child PID namespace (`unshare --pid`), where the
/// container's pids do not exist: `ps -a` and `gc` used to take every container for
/// dead and SIGKILL it, freeing its address. Protection: pids recorded in another PID
/// namespace are not judged, and `rm` from there refuses to signal them.
/// Control: from the container's own PID namespace `rm -f` removes it.
#[test]
fn a_child_pid_namespace_does_not_reap_running_containers() {
    let c = Ctx::new();
    let d = detached(&c, "pidns");
    c.l.ok(&[
        "run", "-d", "--net", "none", "--name", "pidns", "fix", "sleep", "120",
    ]);
    until("running", || status(&c, "pidns") == "running");
    let pid = inspect(&c, "pidns")["state"]["pid"].as_i64().unwrap_or(0) as i32;
    assert!(alive(pid), "pid {pid}");
    for verb in [&["ps", "-a"][..], &["gc"], &["rm", "-f", "pidns"]] {
        let inner = c.l.command(verb);
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc"])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let r = crate::harness::run_bounded(cmd, Duration::from_secs(60));
        assert!(
            alive(pid),
            "{verb:?} from a child PID namespace killed it: {}",
            r.dump()
        );
    }
    assert_eq!(status(&c, "pidns"), "running");
    c.l.ok(&["rm", "-f", "pidns"]);
    until("gone", || !alive(pid));
    drop(d);
}
