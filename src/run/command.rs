//! The exec tail: the last steps before the command runs, one code path for `run`
//! (PID 1's forked child) and `exec` (the child forked after joining a running
//! container's namespaces), as youki's init and crun's exec share their step helpers.
//!
//! In order: not dumpable (the host binary stays unreachable through /proc/PID/exe
//! until execve), the planned stdio (stdio.rs), no descriptor but stdio and the error
//! pipe, default signals, umask 022, a new session, the terminal or stdin, the working
//! directory resolved inside the root (before the privilege drop: `run` creates a
//! missing one as root), a new session keyring, oom_score_adj and rlimits,
//! capabilities, no_new_privs, credentials, fchdir (checked to be inside the root,
//! CVE-2024-21626), the seccomp filter, every other fd close-on-exec, execve over the
//! planned PATH candidates. A failure is reported on the error pipe as its `Step` (127
//! not found, 126 not executable, 125 any other) and the child exits with that code.
//!
//! Runs between fork and execve: syscalls only, nothing allocated.

use std::ffi::{c_int, CStr, CString};
use std::os::fd::{AsRawFd, RawFd};

use super::mounts;
use super::plan::User;
use super::report::{report, step_err, Step};
use super::seccomp::Program;
use super::spec::{CapSets, Rlimit};
use super::sys::{self, cvt, errno};
use crate::exit::ExitStatus;

/// Everything the tail needs, built before the fork.
pub(crate) struct Command<'a> {
    pub user: &'a User,
    /// Absolute, normalised.
    pub workdir: &'a CStr,
    /// Create a missing working directory (`run`, as Docker); `exec` needs it to exist.
    pub create_workdir: bool,
    /// Paths execve tries in order (the PATH search, done before the fork).
    pub exec_paths: &'a [CString],
    pub argv: &'a [*const libc::c_char],
    pub envp: &'a [*const libc::c_char],
    /// The pty slave, made the controlling terminal and stdio.
    pub tty: Option<RawFd>,
    /// What goes on fds 0-2 first (stdio.rs's plan; -1 keeps the fd). `run`'s PID 1
    /// did this already; `exec`'s child does it here.
    pub stdio: [RawFd; 3],
    /// Keep stdin; else it is /dev/null.
    pub stdin: bool,
    pub capabilities: u64,
    /// An OCI contract's five sets (then `capabilities` is the bounding set only).
    pub cap_sets: Option<CapSets>,
    pub cap_last: u32,
    pub no_new_privileges: bool,
    /// Installed last before execve; None: unconfined.
    pub seccomp: Option<&'a Program>,
    pub rlimits: &'a [Rlimit],
    /// The decimal value for /proc/self/oom_score_adj.
    pub oom_score_adj: &'a CStr,
    pub error_wr: RawFd,
    /// An OCI container's exec FIFO (-1: none): once everything but the filter and the
    /// exec is done, the error pipe is closed (`create` returns: the container is
    /// "created") and one byte is read from it, which `start` writes.
    pub start_fifo: RawFd,
    /// SIGKILL when the parent exits (`run`'s PID 1, a foreground `exec`'s locker); not
    /// for an OCI container's PID 1 or a detached exec, which outlive locker by design.
    pub die_with_parent: bool,
    /// The command's umask (022 but for an OCI process.user.umask).
    pub umask: libc::mode_t,
    /// The caller's fds 3..3+N pass to the command (`--preserve-fds`), its own fds
    /// above them.
    pub preserve_fds: u32,
}

/// The exit code a failed step leaves with (the parent reads the report first).
fn code(step: Step) -> c_int {
    match step {
        Step::ExecNotFound => ExitStatus::NotFound,
        Step::ExecDenied => ExitStatus::CannotExecute,
        _ => ExitStatus::Failure,
    }
    .code() as c_int
}

/// Runs the tail; never returns.
pub(crate) fn exec(c: &Command) -> ! {
    let fail = |step: Step, errno: i32| -> ! {
        report(c.error_wr, step_err(step)(errno));
        // SAFETY: _exit ends this forked process without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(code(step)) }
    };
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    sys::install_stdio(&c.stdio).unwrap_or_else(|e| fail(Step::Stdio, e));
    let first_own = 3 + c.preserve_fds as RawFd;
    sys::close_fds_from_except(first_own, &[c.error_wr, c.tty.unwrap_or(-1), c.start_fifo]);
    for fd in 3..first_own {
        // SAFETY: fcntl with integer arguments; an fd not open fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    sys::default_signals();
    // SAFETY: umask and setsid take no pointers.
    unsafe { libc::umask(c.umask) };
    // SAFETY: as above.
    if unsafe { libc::setsid() } < 0 {
        fail(Step::Tty, errno());
    }
    if let Some(slave) = c.tty {
        // SAFETY: ioctl TIOCSCTTY on an fd we own, integer argument.
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
            fail(Step::Tty, errno());
        }
        for fd in 0..3 {
            // SAFETY: dup2 between fds this process owns.
            if unsafe { libc::dup2(slave, fd) } < 0 {
                fail(Step::Stdio, errno());
            }
        }
    } else if !c.stdin {
        sys::redirect_null(0).unwrap_or_else(|e| fail(Step::Stdio, e));
    }
    let workdir = mounts::open_workdir(c.workdir, c.create_workdir)
        .unwrap_or_else(|e| fail(Step::Workdir, e));
    // Not the caller's: its session keyring (secrets of the shell that started
    // locker), its OOM score, its resource limits.
    sys::join_new_session_keyring().unwrap_or_else(|e| fail(Step::Keyring, e));
    sys::set_oom_score_adj(c.oom_score_adj).unwrap_or_else(|e| fail(Step::OomScoreAdj, e));
    for r in c.rlimits {
        sys::setrlimit(r.resource, r.soft, r.hard).unwrap_or_else(|e| fail(Step::Rlimits, e));
    }
    // An OCI process without no_new_privs installs its filter while it holds
    // CAP_SYS_ADMIN (the kernel's condition for a filter without no_new_privs): after
    // the credentials and the working directory, before its final capability set,
    // as runc does (the profile must allow capset and what follows).
    let early_filter = c.cap_sets.is_some() && !c.no_new_privileges && c.seccomp.is_some();
    // The bounding set first (it needs CAP_SETPCAP), then the credentials (they need
    // CAP_SETUID/SETGID, which the final set may lack), then the set itself.
    sys::drop_bounding(c.capabilities, c.cap_last).unwrap_or_else(|e| fail(Step::Capabilities, e));
    if c.no_new_privileges {
        // SAFETY: prctl with integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
            .unwrap_or_else(|e| fail(Step::NoNewPrivs, e));
    }
    let u = c.user;
    if c.cap_sets.is_some() {
        // The OCI sets are kept across the setuid below, then set exactly.
        // SAFETY: prctl with integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
            .unwrap_or_else(|e| fail(Step::Capabilities, e));
    }
    // SAFETY: setgroups reads u.groups.len() gids from a live Vec.
    let groups = unsafe { libc::setgroups(u.groups.len(), u.groups.as_ptr()) };
    // A single-id user namespace (rootless without subordinate ids) denies setgroups:
    // the process keeps the user's own groups, which it had anyway.
    if (groups < 0 && !(errno() == libc::EPERM && sys::setgroups_denied()))
        // SAFETY: setgid takes an integer.
        || unsafe { libc::setgid(u.gid) } < 0
        // SAFETY: setuid takes an integer.
        || unsafe { libc::setuid(u.uid) } < 0
    {
        fail(Step::Credentials, errno());
    }
    // The credential change cleared any parent-death signal: an `exec`'d command dies
    // with the `locker exec` that waits for it, as `run`'s dies with PID 1.
    if c.die_with_parent {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    const SYS_ADMIN: u64 = 1 << 21;
    match &c.cap_sets {
        Some(sets) if early_filter => sys::set_cap_sets(&super::spec::CapSets {
            effective: sets.effective | SYS_ADMIN,
            permitted: sets.permitted | SYS_ADMIN,
            ..*sets
        }),
        Some(sets) => sys::set_cap_sets(sets),
        None => sys::set_capabilities(c.capabilities),
    }
    .unwrap_or_else(|e| fail(Step::Capabilities, e));
    // SAFETY: fchdir on an fd we own.
    if unsafe { libc::fchdir(workdir.as_raw_fd()) } < 0 {
        fail(Step::Chdir, errno());
    }
    drop(workdir);
    sys::check_cwd_inside_root().unwrap_or_else(|e| fail(Step::Chdir, e));
    if let (true, Some(filter), Some(sets)) = (early_filter, c.seccomp, &c.cap_sets) {
        filter.install().unwrap_or_else(|e| fail(Step::Seccomp, e));
        sys::set_cap_sets(sets).unwrap_or_else(|e| fail(Step::Capabilities, e));
    }
    if c.start_fifo >= 0 {
        // SAFETY: closes an fd this process owns; nothing is reported on it after this.
        unsafe { libc::close(c.error_wr) };
        let mut byte = [0u8; 1];
        // SAFETY: a buffer this frame owns, with its true length.
        if unsafe { libc::read(c.start_fifo, byte.as_mut_ptr().cast(), 1) } != 1 {
            // SAFETY: _exit ends this process at once.
            unsafe { libc::_exit(ExitStatus::Failure.code() as c_int) }
        }
        // SAFETY: closes an fd this process owns and does not use again.
        unsafe { libc::close(c.start_fifo) };
    }
    // Last, so that everything above may use what the filter refuses; what follows
    // (close_range, write on failure, execve) every profile must allow.
    if let Some(filter) = c.seccomp.filter(|_| !early_filter) {
        filter.install().unwrap_or_else(|e| fail(Step::Seccomp, e));
    }
    // CVE-2024-21626: nothing but 0-2 (and the fds `--preserve-fds` names) crosses
    // the exec (the error pipe closes on it).
    // SAFETY: close_range with integer arguments.
    unsafe {
        libc::close_range(
            first_own as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as c_int,
        )
    };
    let (step, e) = exec_first(c.exec_paths, c.argv, c.envp);
    fail(step, e)
}

/// Tries each candidate; returns only on failure, with how it failed: not found when
/// every candidate was missing, else not executable (the last denial wins, as execvp).
fn exec_first(
    paths: &[CString],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> (Step, i32) {
    let mut denied = 0;
    for p in paths {
        // SAFETY: p, argv and envp are NUL-terminated and outlive the call; argv and
        // envp end in a null pointer (sys::pointers).
        unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        match errno() {
            libc::ENOENT | libc::ENOTDIR => {}
            e @ (libc::EACCES | libc::EISDIR | libc::ENOEXEC | libc::EPERM) => denied = e,
            e => return (Step::ExecDenied, e),
        }
    }
    if denied != 0 {
        (Step::ExecDenied, denied)
    } else {
        (Step::ExecNotFound, libc::ENOENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_docker() {
        assert_eq!(code(Step::ExecNotFound), 127);
        assert_eq!(code(Step::ExecDenied), 126);
        assert_eq!(code(Step::Chdir), 125);
    }

    #[test]
    fn exec_first_classifies_failures() {
        let argv = crate::run::plan::pointers(&[]);
        let missing = [c"/nonexistent/a".to_owned(), c"/nonexistent/b".to_owned()];
        assert_eq!(
            exec_first(&missing, &argv, &argv),
            (Step::ExecNotFound, libc::ENOENT)
        );
        let t = tempfile::tempdir().unwrap();
        let plain = t.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let plain = CString::new(plain.to_str().unwrap()).unwrap();
        let dir = CString::new(t.path().to_str().unwrap()).unwrap();
        // A directory, then a missing one: denied wins over not found.
        assert_eq!(
            exec_first(&[dir, missing[0].clone()], &argv, &argv).0,
            Step::ExecDenied
        );
        assert_eq!(exec_first(&[plain], &argv, &argv).0, Step::ExecDenied);
    }
}
