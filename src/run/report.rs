//! What a failed step in the container's setup or exec tail sends to the parent: a
//! fixed 16-byte `Report` on a CLOEXEC pipe (EOF with no report means execve worked),
//! and the parent's reading of it as a `RunError`. One mapping for `run` and `exec`.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use super::plan::MountOp;
use super::RunError;

/// Declares `Step` and the list `from_u32` decodes with from one list of names, so a
/// new step cannot be left out of the decoding.
macro_rules! steps {
    ($first:ident = $value:literal, $($name:ident),+ $(,)?) => {
        /// Steps that can fail in the child, sent over the error pipe.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub(crate) enum Step {
            $first = $value,
            $($name),+
        }

        impl Step {
            const ALL: &'static [Step] = &[Step::$first, $(Step::$name),+];
        }
    };
}

steps!(
    Release = 1,
    CgroupJoin,
    CgroupNs,
    JoinNetns,
    Hostname,
    Mount,
    Loopback,
    Pivot,
    Workdir,
    Capabilities,
    NoNewPrivs,
    Fork,
    Stdio,
    Tty,
    Credentials,
    Chdir,
    ExecNotFound,
    ExecDenied,
    Seccomp,
    Keyring,
    OomScoreAdj,
    Rlimits,
    Sysctl,
);

impl Step {
    pub(crate) fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// What the child writes on failure: 16 bytes, fixed layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    pub step: Step,
    pub errno: i32,
    /// Index of the mount op, u32::MAX when none.
    pub index: u32,
    /// Static description for mount failures (index into MOUNT_WHATS), else 0.
    pub what: &'static str,
}

impl Report {
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(self.step as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.errno.to_le_bytes());
        b[8..12].copy_from_slice(&self.index.to_le_bytes());
        // The child is a copy of the parent's address space: a &'static str pointer
        // is valid in both. Still, never dereference it unchecked: send a hash-free
        // index instead.
        let w = MOUNT_WHATS
            .iter()
            .position(|w| *w == self.what)
            .unwrap_or(0) as u32;
        b[12..16].copy_from_slice(&w.to_le_bytes());
        b
    }
    pub(crate) fn decode(b: &[u8]) -> Option<Report> {
        if b.len() < 16 {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(Report {
            step: Step::from_u32(u(0))?,
            errno: u(4) as i32,
            index: u(8),
            what: MOUNT_WHATS.get(u(12) as usize).copied().unwrap_or(""),
        })
    }
}

/// Every `what` string mounts.rs uses (kept in one list so it can cross the pipe).
pub(crate) const MOUNT_WHATS: &[&str] = &[
    "",
    "chown",
    "attach the idmapped lower layer",
    "bind the host's /sys on",
    "make read-only",
    "stat node for",
    "check the host's device node for",
    "make / private",
    "mount tmpfs on",
    "mkdir",
    "bind image root",
    "remount image root read-only",
    "remount image root nodev",
    "mount overlay",
    "mount overlay (no layers planned)",
    "fsopen overlay",
    "fsconfig overlay lowerdir+",
    "fsconfig overlay upperdir",
    "fsconfig overlay workdir",
    "fsconfig overlay flag",
    "create overlay",
    "fsmount overlay",
    "move_mount overlay",
    "open root",
    "create",
    "open (must be a directory, not a symlink)",
    "mount proc on",
    "mount sysfs on",
    "open /dev/null",
    "stat /dev/null",
    "check /dev/null is char 1:3",
    "open",
    "open a pty on the container's /dev/pts/ptmx",
    "bind pty on",
    "name",
    "bind file on",
    "stat source of",
    "bind volume on",
    "set flags (nodev, nosuid, ro) of volume on",
    "remount read-only",
    "stat",
    "mask",
    "mask (no /dev/null yet)",
    "bind read-only",
    "open nodes dir for",
    "mknod for",
    "open node for",
    "create node in",
    "open node in",
    "bind node in",
    "mkdir in",
    "open in",
    "mount in",
    "symlink in",
    "chdir to new root",
    "pivot_root",
    "detach old root",
    "chdir /",
    "bind on",
    "chown node for",
    "chroot",
    "mount on",
    "move root",
    "remount",
    "remount / read-only",
    "set propagation of",
    "set propagation of /",
];

pub(crate) fn report(fd: RawFd, r: Report) {
    let b = r.encode();
    // SAFETY: a buffer this frame owns, with its true length.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

pub(crate) fn step_err(step: Step) -> impl Fn(i32) -> Report {
    move |errno| Report {
        step,
        errno,
        index: u32::MAX,
        what: "",
    }
}

/// The child's report as an error. `cmd` is the command (for 126/127); `mounts` and
/// `volumes` name the mount op a Mount/Pivot report's index points at.
pub(crate) fn explain(
    buf: &[u8],
    cmd: &CString,
    mounts: &[MountOp],
    volumes: &[std::path::PathBuf],
) -> RunError {
    let Some(r) = Report::decode(buf) else {
        return RunError::Setup {
            step: "set up the container".into(),
            source: io::Error::other("garbled report"),
        };
    };
    let source = io::Error::from_raw_os_error(r.errno);
    let cmd = cmd.to_string_lossy().into_owned();
    match r.step {
        Step::ExecNotFound => RunError::NotFound(cmd),
        Step::ExecDenied => RunError::NotExecutable { cmd, source },
        Step::Mount | Step::Pivot => {
            let target = match mounts.get(r.index as usize) {
                Some(op) => format!(" {}", describe(op, volumes)),
                None => String::new(),
            };
            // An ordinary user's overlay: the kernel must allow it in a user namespace.
            let hint = if r.what == "mount overlay" && super::userns::rootless() {
                " (rootless: overlayfs in a user namespace needs Linux 5.11 or later)"
            } else {
                ""
            };
            RunError::Setup {
                step: format!("{}{target}{hint}", r.what),
                source,
            }
        }
        s => RunError::Setup {
            step: step_text(s),
            source,
        },
    }
}

/// What a step failing means to the user (the rest: the step's name).
fn step_text(s: Step) -> String {
    match s {
        Step::OomScoreAdj => {
            "set the command's oom_score_adj (lowering it below the caller's needs CAP_SYS_RESOURCE on the host: root, not rootless)".into()
        }
        Step::Rlimits => {
            "set the command's resource limits (a --ulimit above the caller's hard limit needs CAP_SYS_RESOURCE on the host)".into()
        }
        Step::Credentials => "set the command's user and groups".into(),
        s => format!("{s:?}").to_lowercase(),
    }
}

fn describe(op: &MountOp, volumes: &[std::path::PathBuf]) -> String {
    let show = |c: &CString| format!("/{}", c.to_string_lossy());
    match op {
        MountOp::Proc => "/proc".into(),
        MountOp::Sys => "/sys".into(),
        MountOp::Dev => "/dev".into(),
        MountOp::Console => "/dev/console".into(),
        MountOp::EtcFile { name } => format!("/etc/{name}"),
        MountOp::Bind { index, target, .. } => {
            format!("{} (volume {})", show(target), volumes[*index].display())
        }
        MountOp::Tmpfs { target, .. }
        | MountOp::Mask { target }
        | MountOp::ReadOnly { target }
        | MountOp::Fs { target, .. } => show(target),
        MountOp::OciBind { index, target, .. } => {
            format!("{} (from {})", show(target), volumes[*index].display())
        }
        MountOp::DevNodes { .. } => "/dev (device nodes)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_roundtrip() {
        let r = Report {
            step: Step::Mount,
            errno: libc::ELOOP,
            index: 3,
            what: "mount proc on",
        };
        let d = Report::decode(&r.encode()).unwrap();
        assert_eq!(
            (d.step, d.errno, d.index, d.what),
            (Step::Mount, libc::ELOOP, 3, "mount proc on")
        );
        assert!(Report::decode(&[0u8; 16]).is_none());
    }

    #[test]
    fn every_step_decodes_to_itself() {
        assert_eq!(Step::ALL.len(), Step::Sysctl as usize);
        for &s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
        assert_eq!(Step::from_u32(0), None);
        assert_eq!(Step::from_u32(Step::Sysctl as u32 + 1), None);
    }

    /// Every failure description in mounts.rs must be in MOUNT_WHATS to cross the pipe.
    #[test]
    fn mount_whats_complete() {
        let src = include_str!("mounts.rs");
        for part in src.split("fail(\"").skip(1) {
            let what = &part[..part.find('"').unwrap()];
            assert!(
                MOUNT_WHATS.contains(&what),
                "{what:?} missing from MOUNT_WHATS"
            );
        }
        for part in src.split("what: \"").skip(1) {
            let what = &part[..part.find('"').unwrap()];
            assert!(
                MOUNT_WHATS.contains(&what),
                "{what:?} missing from MOUNT_WHATS"
            );
        }
    }
}
