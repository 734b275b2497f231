//! The container's seccomp filter: Docker's default profile (moby's
//! profiles/seccomp/default.json, its semantics rewritten as a Rust table below) and
//! Docker's profile JSON as input (`--security-opt seccomp=PROFILE.json`, the files
//! users already have).
//!
//! [`Profile`] is a parsed profile, independent of the architecture and of the
//! capabilities; [`compile`] turns it into a [`Program`] for this build's
//! architecture and the container's capability set (Docker's `includes.caps` and
//! `excludes.caps`); the child installs it between clone and execve with
//! [`Program::install`], which does not allocate.
//!
//! Why the `seccompiler` crate (rust-vmm) and not libseccomp: it is pure Rust, so the
//! static binary stays static, and it compiles in-process in microseconds, so the
//! filter is compiled in the parent before the clone at every run; libseccomp would
//! need the C library linked statically and costs milliseconds per compile (what crun
//! pays). Its limits: one architecture per filter, no user notification, and one
//! match and one mismatch action per `SeccompFilter`, where Docker's semantics need an
//! action per rule (ALLOW, ERRNO(EPERM), ERRNO(ENOSYS) for clone3, ERRNO(0) for the
//! suppressed syncs, any mix in a user's profile). So seccompiler compiles each rule's
//! argument checks (`SeccompRule` to BPF, with the 64-bit comparisons split into
//! 32-bit halves) and this module lays out the program around them:
//!
//! 1. `seccomp_data.arch` is not this build's (AUDIT_ARCH_X86_64 or
//!    AUDIT_ARCH_AARCH64): KILL_PROCESS. Stricter than Docker, which also admits the
//!    32-bit compat ABIs (i386 by `int 0x80`, x32, arm32) with their own syscall
//!    numbers: one architecture per filter, so a container's i386 binary is killed.
//! 2. nr == -1: ALLOW. No syscall runs; it is how a tracer skips one.
//! 3. x86_64 only: nr >= 0x40000000 (the x32 bit, same arch value): KILL_PROCESS.
//!    seccompiler does not check it, and an x32 number misses every rule, so a
//!    profile whose default allows would let x32 syscalls past its denials.
//! 4. nr above the highest syscall the profile names: ERRNO(ENOSYS), unless the
//!    default action allows or is ENOSYS already (runc's stub): a syscall newer than
//!    the profile looks unimplemented, and glibc falls back instead of failing.
//! 5. A binary search on nr down to leaves of a few JEQ; each syscall's code is its
//!    rules in profile order (the first whose conditions hold decides), then the
//!    default action.
//!
//! Rule semantics, for both inputs (those of runc and libseccomp): a rule whose
//! `includes` do not hold (every listed cap in the set, the native arch listed, the
//! kernel at least `minKernel`) or whose `excludes` hold (any listed cap in the set,
//! the native arch listed, the kernel at least `minKernel`) is left out; so is a rule whose action is the default action. A
//! syscall's first unconditional rule decides alone. A rule with two conditions on
//! one argument becomes one rule per condition (runc). `SCMP_CMP_MASKED_EQ` is
//! `(arg & value) == valueTwo`; comparisons are on 64 bits. Names this architecture
//! does not have are skipped; names no Linux architecture has are kept in
//! [`Profile::unknown_syscalls`] for a warning.

use std::borrow::Cow;

use super::spec::CAP_NAMES;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
};
use serde::Deserialize;

#[path = "seccomp_table.rs"]
mod table;
use table::number;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
/// This architecture in Docker's `includes.arches` / `excludes.arches` (Go's names).
#[cfg(target_arch = "x86_64")]
const ARCH_NAME: &str = "amd64";
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "aarch64")]
const ARCH_NAME: &str = "arm64";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp filter knows the syscall numbers of x86_64 and aarch64 only");

/// x32 syscalls enter with AUDIT_ARCH_X86_64 and this bit set in nr.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// Syscalls a binary-search leaf tests one after the other.
const LEAF: usize = 8;
const EPERM: u16 = libc::EPERM as u16;
const ENOSYS: u16 = libc::ENOSYS as u16;
/// errno values the kernel passes on (MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;
/// Made to return 0 at once by `suppress_sync`.
const SYNC: [&str; 6] = [
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "msync",
];

/// What the filter answers to a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    /// Fail with this errno, without running the syscall (0: succeed without it).
    Errno(u16),
    KillThread,
    KillProcess,
    /// SIGSYS.
    Trap,
    /// Allow and log.
    Log,
    /// Stop for a ptrace tracer with this message (without one: ENOSYS).
    Trace(u16),
}

impl Action {
    fn ret(self) -> u32 {
        u32::from(match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e.into()),
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
            Action::Trace(m) => SeccompAction::Trace(m.into()),
        })
    }

    /// runc's test for "the default lets syscalls run" (then no ENOSYS stub).
    fn lets_run(self) -> bool {
        matches!(self, Action::Allow | Action::Log | Action::Trace(_))
    }
}

/// A comparison of Docker's `args[].op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & value) == value_two`.
    MaskedEq,
}

/// One condition on a syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arg {
    index: u8,
    op: Op,
    value: u64,
    value_two: u64,
    /// Compare the low 32 bits only: for an `int` argument, which the kernel
    /// truncates, so the upper half cannot smuggle a value past a `!=`. The built-in
    /// profile's socket rule uses it; Docker's JSON has no way to say it.
    low32: bool,
}

const fn arg(index: u8, op: Op, value: u64) -> Arg {
    Arg {
        index,
        op,
        value,
        value_two: 0,
        low32: false,
    }
}

/// Docker's `includes` or `excludes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Filter {
    /// Capability bits (bit N = capability N): all needed (includes), any (excludes).
    caps: u64,
    /// Go architecture names: "amd64", "arm64", "x86", "x32", "arm", ...
    arches: Vec<Cow<'static, str>>,
    /// (major, minor).
    min_kernel: Option<(u32, u32)>,
}

/// One entry of `syscalls[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    names: Vec<Cow<'static, str>>,
    action: Action,
    /// All must hold.
    args: Vec<Arg>,
    includes: Filter,
    excludes: Filter,
}

/// A seccomp profile, parsed: syscall names, not numbers, and the capability
/// conditions still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    default: Action,
    /// SECCOMP_FILTER_FLAG_* bits for seccomp(2).
    flags: libc::c_ulong,
    rules: Vec<Rule>,
    unknown: Vec<String>,
}

impl Profile {
    /// Syscall names of the profile that no Linux architecture has (typos, most
    /// likely), each once. They were skipped, as libseccomp skips names unknown on
    /// its architecture.
    pub(crate) fn unknown_syscalls(&self) -> &[String] {
        &self.unknown
    }
}

const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_SYS_MODULE: u64 = 1 << 16;
const CAP_SYS_RAWIO: u64 = 1 << 17;
const CAP_SYS_CHROOT: u64 = 1 << 18;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_PACCT: u64 = 1 << 20;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_SYS_BOOT: u64 = 1 << 22;
const CAP_SYS_NICE: u64 = 1 << 23;
const CAP_SYS_TIME: u64 = 1 << 25;
const CAP_SYS_TTY_CONFIG: u64 = 1 << 26;
const CAP_SYSLOG: u64 = 1 << 34;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

/// The namespace flags clone may not carry without CAP_SYS_ADMIN: CLONE_NEWNS |
/// NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP (0x7E020000).
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// An entry of the built-in profile: `syscalls[]` of Docker's JSON, static.
struct Def {
    names: &'static [&'static str],
    action: Action,
    args: &'static [Arg],
    /// includes.caps
    caps: u64,
    /// excludes.caps
    not_caps: u64,
    /// includes.arches
    arches: &'static [&'static str],
}

const fn allow(names: &'static [&'static str]) -> Def {
    Def {
        names,
        action: Action::Allow,
        args: &[],
        caps: 0,
        not_caps: 0,
        arches: &[],
    }
}

const fn allow_with(cap: u64, names: &'static [&'static str]) -> Def {
    Def {
        caps: cap,
        ..allow(names)
    }
}

/// Docker's unconditional list, trimmed (see [`DEFAULT`]).
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset", "chdir",
    "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close",
    "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
    "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat",
    "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_waitv",
    "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
    "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall",
    "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat",
    "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
    "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups",
    "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
    "setreuid", "setrlimit", "setsid", "setsockopt", "setuid", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "socketpair", "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
    "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask", "uname",
    "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork", "vmsplice", "wait4",
    "waitid", "write", "writev",
];

/// Docker's default profile, trimmed to x86_64 and aarch64 (entries for other
/// architectures left out; names of their 32-bit ABIs too). Default: ERRNO(EPERM).
/// Where it differs from Docker's (as of moby's default.json with pkey_* and the
/// AF_VSOCK rule), the entry says so. A Rust table, not an embedded JSON file: parsing
/// it as Docker's JSON takes ~130 µs (release build), [`default_profile`] ~3 µs, and
/// [`compile`] of it ~20 µs.
const DEFAULT: &[Def] = &[
    // Docker's unconditional list, less io_uring_setup/enter/register (a large
    // kernel attack surface; Docker allows them), name_to_handle_at (below, with
    // CAP_SYS_ADMIN, where Docker had it before), adjtimex and clock_adjtime (below,
    // with CAP_SYS_TIME); plus fchmodat2, which Docker's list lacks and glibc >= 2.39
    // calls for fchmodat(AT_SYMLINK_NOFOLLOW) (EPERM breaks tar and chmod -h).
    allow(ALLOWED),
    // Docker allows ptrace, process_vm_readv and process_vm_writev on kernels >= 4.8
    // (seccomp checks again after a tracer's changes); locker allows them only with
    // CAP_SYS_PTRACE (below), which its default set does not have.
    //
    // socket, but not AF_VSOCK (host communication), nor a NETLINK_KOBJECT_UEVENT
    // socket (the host's device events: every disk, loop device and USB plug; Docker
    // allows it). On the low 32 bits: the kernel reads an int, and Docker's 64-bit
    // compare lets AF_VSOCK | 1 << 32 through. Two rules: any family but those two;
    // netlink with any protocol but uevents.
    Def {
        args: &[
            Arg {
                low32: true,
                ..arg(0, Op::Ne, libc::AF_VSOCK as u64)
            },
            Arg {
                low32: true,
                ..arg(0, Op::Ne, libc::AF_NETLINK as u64)
            },
        ],
        ..allow(&["socket"])
    },
    Def {
        args: &[
            Arg {
                low32: true,
                ..arg(0, Op::Eq, libc::AF_NETLINK as u64)
            },
            Arg {
                low32: true,
                ..arg(2, Op::Ne, libc::NETLINK_KOBJECT_UEVENT as u64)
            },
        ],
        ..allow(&["socket"])
    },
    // personality with Docker's safe values only: PER_LINUX (0), PER_LINUX32 (8),
    // UNAME26 (0x20000), PER_LINUX32 | UNAME26, and 0xffffffff (the query).
    Def {
        args: &[arg(0, Op::Eq, 0x0)],
        ..allow(&["personality"])
    },
    Def {
        args: &[arg(0, Op::Eq, 0x0008)],
        ..allow(&["personality"])
    },
    Def {
        args: &[arg(0, Op::Eq, 0x20000)],
        ..allow(&["personality"])
    },
    Def {
        args: &[arg(0, Op::Eq, 0x20008)],
        ..allow(&["personality"])
    },
    Def {
        args: &[arg(0, Op::Eq, 0xffff_ffff)],
        ..allow(&["personality"])
    },
    Def {
        arches: &["amd64", "x32"],
        ..allow(&["arch_prctl"])
    },
    Def {
        arches: &["amd64", "x32", "x86"],
        ..allow(&["modify_ldt"])
    },
    allow_with(CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
    allow_with(
        CAP_SYS_ADMIN,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    // clone without namespace flags (arg 0 is the flags on x86_64 and aarch64).
    Def {
        args: &[Arg {
            value_two: 0,
            ..arg(0, Op::MaskedEq, CLONE_NS_FLAGS)
        }],
        not_caps: CAP_SYS_ADMIN,
        ..allow(&["clone"])
    },
    // clone3's flags are in memory, out of the filter's reach: ENOSYS, so glibc
    // falls back to clone, whose flags the rule above checks.
    Def {
        action: Action::Errno(ENOSYS),
        not_caps: CAP_SYS_ADMIN,
        ..allow(&["clone3"])
    },
    allow_with(CAP_SYS_BOOT, &["reboot"]),
    allow_with(CAP_SYS_CHROOT, &["chroot"]),
    allow_with(
        CAP_SYS_MODULE,
        &["delete_module", "init_module", "finit_module"],
    ),
    allow_with(CAP_SYS_PACCT, &["acct"]),
    allow_with(
        CAP_SYS_PTRACE,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    allow_with(CAP_SYS_RAWIO, &["iopl", "ioperm"]),
    // adjtimex and clock_adjtime: Docker allows them to everyone (changing the clock
    // needs CAP_SYS_TIME in the kernel anyway); here they come with the capability.
    allow_with(
        CAP_SYS_TIME,
        &["settimeofday", "clock_settime", "adjtimex", "clock_adjtime"],
    ),
    allow_with(CAP_SYS_TTY_CONFIG, &["vhangup"]),
    allow_with(
        CAP_SYS_NICE,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    allow_with(CAP_SYSLOG, &["syslog"]),
    allow_with(CAP_BPF, &["bpf"]),
    allow_with(CAP_PERFMON, &["perf_event_open"]),
];

/// Docker's default profile (see [`DEFAULT`]): ERRNO(EPERM) for what it does not list.
pub(crate) fn default_profile() -> Profile {
    let names = |n: &'static [&'static str]| n.iter().map(|&s| Cow::Borrowed(s)).collect();
    Profile {
        default: Action::Errno(EPERM),
        flags: 0,
        rules: DEFAULT
            .iter()
            .map(|d| Rule {
                names: names(d.names),
                action: d.action,
                args: d.args.to_vec(),
                includes: Filter {
                    caps: d.caps,
                    arches: names(d.arches),
                    min_kernel: None,
                },
                excludes: Filter {
                    caps: d.not_caps,
                    ..Filter::default()
                },
            })
            .collect(),
        unknown: Vec::new(),
    }
}

/// A profile that allows everything (for a filter that only suppresses sync calls).
pub(crate) fn allow_all() -> Profile {
    Profile {
        default: Action::Allow,
        flags: 0,
        rules: Vec::new(),
        unknown: Vec::new(),
    }
}

/// Reads and parses a Docker seccomp profile file.
pub(crate) fn load_profile(path: &Path) -> Result<Profile, SeccompError> {
    let json = std::fs::read(path).map_err(|source| SeccompError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_profile(&json).map_err(|e| SeccompError::File {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Docker's profile JSON, as moby reads it (unknown fields ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<JsonArch>>,
    listener_path: Option<String>,
    flags: Option<Vec<String>>,
    syscalls: Option<Vec<JsonSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArch {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    #[serde(default)]
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<JsonArg>>,
    includes: Option<JsonFilter>,
    excludes: Option<JsonFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u32,
    #[serde(default)]
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonFilter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// libseccomp's architecture names (`architectures`, `archMap`).
const SCMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// Parses Docker's seccomp profile format: defaultAction, defaultErrnoRet,
/// architectures or archMap (checked, but the filter is always for this build's
/// architecture alone), flags, syscalls[] with name or names, action, errnoRet, args,
/// includes and excludes. A profile without defaultAction is an error (Docker reads
/// one without defaultAction and syscalls as "no filter").
pub(crate) fn parse_profile(json: &[u8]) -> Result<Profile, SeccompError> {
    let j: JsonProfile = serde_json::from_slice(json).map_err(SeccompError::Json)?;
    if j.default_action.is_empty() {
        return Err(SeccompError::Invalid("the profile has no defaultAction"));
    }
    if j.listener_path.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(SeccompError::Unsupported {
            what: "listenerPath".into(),
            place: "the profile".into(),
            why: NO_NOTIFY,
        });
    }
    let (arches, arch_map) = (
        j.architectures.unwrap_or_default(),
        j.arch_map.unwrap_or_default(),
    );
    if !arches.is_empty() && !arch_map.is_empty() {
        return Err(SeccompError::Invalid(
            "the profile has both architectures and archMap; use one",
        ));
    }
    let listed = arch_map
        .iter()
        .flat_map(|m| std::iter::once(&m.architecture).chain(m.sub_architectures.iter().flatten()));
    if let Some(a) = arches
        .iter()
        .chain(listed)
        .find(|a| !SCMP_ARCHES.contains(&a.as_str()))
    {
        return Err(SeccompError::Arch { arch: a.clone() });
    }
    let mut flags = 0;
    for f in j.flags.iter().flatten() {
        flags |= match f.as_str() {
            // The child installing the filter is single-threaded: nothing to sync.
            "SECCOMP_FILTER_FLAG_TSYNC" => 0,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_NEW_LISTENER" => {
                return Err(SeccompError::Unsupported {
                    what: f.clone(),
                    place: "flags".into(),
                    why: NO_NOTIFY,
                })
            }
            _ => return Err(SeccompError::Flag { flag: f.clone() }),
        };
    }
    let default = action(&j.default_action, j.default_errno_ret, || {
        "defaultAction".into()
    })?;
    let syscalls = j.syscalls.unwrap_or_default();
    let mut rules = Vec::with_capacity(syscalls.len());
    let mut unknown: Vec<String> = Vec::new();
    for (i, s) in syscalls.into_iter().enumerate() {
        let names = match (
            s.name.filter(|n| !n.is_empty()),
            s.names.filter(|n| !n.is_empty()),
        ) {
            (Some(n), None) => vec![n],
            (None, Some(ns)) => ns,
            (Some(_), Some(_)) => {
                return Err(SeccompError::Entry {
                    place: format!("syscalls[{i}]"),
                    what: "has both name and names; use one",
                })
            }
            (None, None) => {
                return Err(SeccompError::Entry {
                    place: format!("syscalls[{i}]"),
                    what: "names no syscall",
                })
            }
        };
        let place = || format!("syscalls[{i}] ({})", names[0]);
        let action = action(&s.action, s.errno_ret, place)?;
        let mut args = Vec::new();
        for a in s.args.into_iter().flatten() {
            let index = match u8::try_from(a.index) {
                Ok(n) if n <= 5 => n,
                _ => {
                    return Err(SeccompError::ArgIndex {
                        index: a.index,
                        place: place(),
                    })
                }
            };
            let op = match a.op.as_str() {
                "SCMP_CMP_EQ" => Op::Eq,
                "SCMP_CMP_NE" => Op::Ne,
                "SCMP_CMP_LT" => Op::Lt,
                "SCMP_CMP_LE" => Op::Le,
                "SCMP_CMP_GT" => Op::Gt,
                "SCMP_CMP_GE" => Op::Ge,
                "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
                _ => {
                    return Err(SeccompError::Op {
                        op: a.op,
                        place: place(),
                    })
                }
            };
            args.push(Arg {
                index,
                op,
                value: a.value,
                value_two: a.value_two,
                low32: false,
            });
        }
        let includes = filter(s.includes, &place)?;
        let excludes = filter(s.excludes, &place)?;
        for n in &names {
            if !known(n) && !unknown.contains(n) {
                unknown.push(n.clone());
            }
        }
        rules.push(Rule {
            names: names.into_iter().map(Cow::Owned).collect(),
            action,
            args,
            includes,
            excludes,
        });
    }
    Ok(Profile {
        default,
        flags,
        rules,
        unknown,
    })
}

const NO_NOTIFY: &str = "user notification needs a seccomp agent, and locker has none";

fn action(
    name: &str,
    errno: Option<u32>,
    place: impl Fn() -> String,
) -> Result<Action, SeccompError> {
    let data = || match errno.unwrap_or(EPERM.into()) {
        e if e <= MAX_ERRNO => Ok(e as u16),
        value => Err(SeccompError::Errno {
            value,
            place: place(),
        }),
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(data()?),
        // libseccomp's SCMP_ACT_KILL is the thread's.
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(data()?),
        "SCMP_ACT_NOTIFY" => {
            return Err(SeccompError::Unsupported {
                what: name.into(),
                place: place(),
                why: NO_NOTIFY,
            })
        }
        _ => {
            return Err(SeccompError::Action {
                action: name.into(),
                place: place(),
            })
        }
    })
}

fn filter(f: Option<JsonFilter>, place: &impl Fn() -> String) -> Result<Filter, SeccompError> {
    let Some(f) = f else {
        return Ok(Filter::default());
    };
    let mut caps = 0;
    for c in f.caps.iter().flatten() {
        let upper = c.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        match CAP_NAMES.iter().position(|k| *k == bare) {
            Some(n) => caps |= 1 << n,
            None => {
                return Err(SeccompError::Cap {
                    cap: c.clone(),
                    place: place(),
                })
            }
        }
    }
    let min_kernel = match f.min_kernel.as_deref() {
        None | Some("") => None,
        Some(v) => Some(version(v).ok_or_else(|| SeccompError::MinKernel {
            value: v.into(),
            place: place(),
        })?),
    };
    Ok(Filter {
        caps,
        arches: f
            .arches
            .unwrap_or_default()
            .into_iter()
            .map(Cow::Owned)
            .collect(),
        min_kernel,
    })
}

/// "MAJOR.MINOR", maybe followed by more (".patch", "-flavour").
fn version(s: &str) -> Option<(u32, u32)> {
    let (major, rest) = s.split_once('.')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((major.parse().ok()?, rest[..end].parse().ok()?))
}

/// The running kernel's (major, minor), for `minKernel`.
fn running_kernel() -> Result<(u32, u32), SeccompError> {
    // SAFETY: utsname is arrays of c_char, for which all zeros is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given, which lives across the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(SeccompError::Kernel);
    }
    // SAFETY: uname NUL-terminates release, within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    release
        .to_str()
        .ok()
        .and_then(version)
        .ok_or(SeccompError::Kernel)
}

/// A syscall name some Linux architecture has.
fn known(name: &str) -> bool {
    table::EITHER.binary_search(&name).is_ok() || table::FOREIGN.binary_search(&name).is_ok()
}

/// A BPF program ready to install: one per container, compiled in the parent.
pub(crate) struct Program {
    insns: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.insns.len())
    }
}

impl Program {
    /// The program as bytes (8 per instruction, then the flags), for a container's
    /// state: `exec` installs exactly the filter its container runs under.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.insns.len() * 8 + 8);
        for i in &self.insns {
            b.extend_from_slice(&i.code.to_le_bytes());
            b.push(i.jt);
            b.push(i.jf);
            b.extend_from_slice(&i.k.to_le_bytes());
        }
        #[allow(clippy::unnecessary_cast)] // c_ulong is not u64 on every target
        b.extend_from_slice(&(self.flags as u64).to_le_bytes());
        b
    }

    /// The inverse of `to_bytes`; None for bytes it did not make.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Program> {
        let (body, flags) = b.split_at_checked(b.len().checked_sub(8)?)?;
        if body.len() % 8 != 0 || body.is_empty() || body.len() / 8 > MAX_INSNS {
            return None;
        }
        let insns = body
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Program {
            insns,
            flags: u64::from_le_bytes(flags.try_into().ok()?) as libc::c_ulong,
        })
    }

    /// Instructions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.insns.len()
    }

    /// Installs the filter on the calling thread: seccomp(SECCOMP_SET_MODE_FILTER)
    /// (prctl(PR_SET_SECCOMP) on kernels without seccomp(2)). Needs no_new_privs set
    /// first, or CAP_SYS_ADMIN. Allocates nothing: runs in the forked child between
    /// clone and execve. Err: the errno.
    pub(crate) fn install(&self) -> Result<(), i32> {
        let prog = libc::sock_fprog {
            // compile keeps the length within MAX_INSNS.
            len: self.insns.len() as libc::c_ushort,
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: the kernel reads `len` instructions from `filter` (our Vec, which
        // outlives the call) and copies them; it writes nothing.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = errno();
        if e != libc::ENOSYS || self.flags != 0 {
            return Err(e);
        }
        // SAFETY: as above; prctl takes the same program.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
                0,
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// A syscall's rules, merged (see the module's doc).
#[derive(Default)]
struct Entry<'a> {
    name: &'a str,
    always: Option<Action>,
    when: Vec<(&'a [Arg], Action)>,
}

impl<'a> Entry<'a> {
    fn add(&mut self, args: &'a [Arg], action: Action) {
        if self.always.is_some() {
            return;
        }
        if args.is_empty() {
            self.always = Some(action);
            self.when.clear();
        } else if (0..6).any(|i| args.iter().filter(|a| a.index == i).count() > 1)
            && !args.iter().all(|a| a.low32)
        {
            // Two conditions on one argument in a profile's JSON: either (runc's
            // reading). The built-in table's low-32-bit conditions, which JSON cannot
            // express, all must hold.
            self.when
                .extend(args.iter().map(|a| (std::slice::from_ref(a), action)));
        } else {
            self.when.push((args, action));
        }
    }
}

/// Compiles `p` for this architecture and a container whose capability set is `caps`
/// (bit N = capability N). `suppress_sync`: fsync, fdatasync, sync, syncfs,
/// sync_file_range and msync return 0 without doing anything, whatever the profile
/// says (the build container: its tree is finished and renamed, or thrown away).
pub(crate) fn compile(
    p: &Profile,
    caps: u64,
    suppress_sync: bool,
) -> Result<Program, SeccompError> {
    compile_on(p, caps, suppress_sync, running_kernel)
}

fn compile_on(
    p: &Profile,
    caps: u64,
    suppress_sync: bool,
    kernel: fn() -> Result<(u32, u32), SeccompError>,
) -> Result<Program, SeccompError> {
    let mut running = None;
    let mut at_least = |v: (u32, u32)| -> Result<bool, SeccompError> {
        let k = match running {
            Some(k) => k,
            None => *running.insert(kernel()?),
        };
        Ok(k >= v)
    };
    // Indexed by number.
    let mut syscalls: Vec<Entry> = Vec::new();
    syscalls.resize_with(table::MAX_NR + 1, Entry::default);
    let mut last = None;
    for rule in &p.rules {
        let (inc, exc) = (&rule.includes, &rule.excludes);
        let native = |f: &Filter| f.arches.iter().any(|a| a == ARCH_NAME);
        if native(exc)
            || exc.caps & caps != 0
            || (!inc.arches.is_empty() && !native(inc))
            || inc.caps & caps != inc.caps
        {
            continue;
        }
        if let Some(v) = exc.min_kernel {
            if at_least(v)? {
                continue;
            }
        }
        if let Some(v) = inc.min_kernel {
            if !at_least(v)? {
                continue;
            }
        }
        for name in &rule.names {
            let Some(nr) = number(name) else { continue };
            last = last.max(Some(nr));
            if rule.action != p.default {
                let e = &mut syscalls[nr as usize];
                e.name = name;
                e.add(&rule.args, rule.action);
            }
        }
    }
    if suppress_sync {
        for name in SYNC {
            let nr = number(name).expect("sync syscalls exist on x86_64 and aarch64");
            last = last.max(Some(nr));
            syscalls[nr as usize] = Entry {
                name,
                always: Some(Action::Errno(0)),
                when: Vec::new(),
            };
        }
    }

    // Each syscall's code, back to back in `code`; `bodies` has (nr, its range).
    let default = p.default.ret();
    let mut code = Vec::with_capacity(syscalls.len() + 64);
    let mut bodies = Vec::with_capacity(syscalls.len());
    for (nr, e) in syscalls.iter().enumerate() {
        if e.always.is_none() && e.when.is_empty() {
            continue;
        }
        let start = code.len();
        if let Some(a) = e.always {
            code.push(ret(a.ret()));
        } else {
            for (args, action) in &e.when {
                let held = rule_code(args, &mut code).map_err(|source| SeccompError::Backend {
                    syscall: e.name.into(),
                    source,
                })?;
                if held {
                    code.push(ret(action.ret()));
                }
            }
            code.push(ret(default));
        }
        bodies.push(Body {
            nr: nr as u32,
            code: start..code.len(),
        });
    }

    let mut insns = Vec::with_capacity(16 + tree_len(&bodies));
    insns.extend([
        ld(ARCH_OFFSET),
        jump(libc::BPF_JEQ, AUDIT_ARCH, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        ld(NR_OFFSET),
        jump(libc::BPF_JEQ, u32::MAX, 0, 1),
        ret(libc::SECCOMP_RET_ALLOW),
    ]);
    #[cfg(target_arch = "x86_64")]
    insns.extend([
        jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ]);
    if let Some(last) = last.filter(|_| !p.default.lets_run() && p.default != Action::Errno(ENOSYS))
    {
        insns.extend([
            jump(libc::BPF_JGT, last, 0, 1),
            ret(Action::Errno(ENOSYS).ret()),
        ]);
    }
    dispatch(&bodies, &code, default, &mut insns);
    if insns.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge(insns.len()));
    }
    Ok(Program {
        insns,
        flags: p.flags,
    })
}

/// `struct seccomp_data`: nr at 0, arch at 4.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn ld(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(k: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `if A <op> k` then skip `jt` instructions, else skip `jf`.
fn jump(op: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// A syscall's code: its range in the code of all.
struct Body {
    nr: u32,
    code: std::ops::Range<usize>,
}

/// The jump to a syscall's code if A == nr, else past it.
fn jeq_len(body_len: usize) -> usize {
    if body_len <= 255 {
        1
    } else {
        2
    }
}

/// The length of [`dispatch`]'s code for `bodies`.
fn tree_len(bodies: &[Body]) -> usize {
    if bodies.len() <= LEAF {
        let len = |b: &Body| jeq_len(b.code.len()) + b.code.len();
        return bodies.iter().map(len).sum::<usize>() + 1;
    }
    let (low, high) = bodies.split_at(bodies.len() / 2);
    let low = tree_len(low);
    jeq_len(low) + low + tree_len(high)
}

/// The binary search on nr (in A) over `bodies` (sorted by nr, their code in `code`,
/// each ending in a return); a number none of them has gets `default`.
fn dispatch(
    bodies: &[Body],
    code: &[libc::sock_filter],
    default: u32,
    out: &mut Vec<libc::sock_filter>,
) {
    if bodies.len() <= LEAF {
        for b in bodies {
            let body = &code[b.code.clone()];
            match u8::try_from(body.len()) {
                Ok(n) => out.push(jump(libc::BPF_JEQ, b.nr, 0, n)),
                Err(_) => out.extend([
                    jump(libc::BPF_JEQ, b.nr, 1, 0),
                    stmt(libc::BPF_JMP | libc::BPF_JA, body.len() as u32),
                ]),
            }
            out.extend_from_slice(body);
        }
        out.push(ret(default));
        return;
    }
    let (low, high) = bodies.split_at(bodies.len() / 2);
    let skip = tree_len(low);
    match u8::try_from(skip) {
        Ok(n) => out.push(jump(libc::BPF_JGE, high[0].nr, n, 0)),
        Err(_) => out.extend([
            jump(libc::BPF_JGE, high[0].nr, 0, 1),
            stmt(libc::BPF_JMP | libc::BPF_JA, skip as u32),
        ]),
    }
    dispatch(low, code, default, out);
    dispatch(high, code, default, out);
}

/// Appends seccompiler's code for one rule (all of `args`) to `out`: it falls
/// through to the next instruction when they hold, skips it when not. False (nothing
/// appended): the rule cannot hold (a MASKED_EQ wanting bits outside its mask).
fn rule_code(
    args: &[Arg],
    out: &mut Vec<libc::sock_filter>,
) -> Result<bool, seccompiler::BackendError> {
    let mut conditions = Vec::with_capacity(args.len());
    for a in args {
        let (op, value) = match a.op {
            Op::Eq => (SeccompCmpOp::Eq, a.value),
            Op::Ne => (SeccompCmpOp::Ne, a.value),
            Op::Lt => (SeccompCmpOp::Lt, a.value),
            Op::Le => (SeccompCmpOp::Le, a.value),
            Op::Gt => (SeccompCmpOp::Gt, a.value),
            Op::Ge => (SeccompCmpOp::Ge, a.value),
            Op::MaskedEq if a.value_two & !a.value != 0 => return Ok(false),
            Op::MaskedEq => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        };
        let len = if a.low32 {
            SeccompCmpArgLen::Dword
        } else {
            SeccompCmpArgLen::Qword
        };
        conditions.push(SeccompCondition::new(a.index, len, op, value)?);
    }
    let code: BpfProgram = SeccompRule::new(conditions)?.into();
    out.extend(code.into_iter().map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    Ok(true)
}

/// What went wrong reading, parsing or compiling a profile; each names the file,
/// entry, syscall or action.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    #[error("read seccomp profile {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<SeccompError>,
    },
    #[error("not a seccomp profile (Docker's JSON format)")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{place} {what}")]
    Entry { place: String, what: &'static str },
    #[error("unknown action {action:?} in {place}")]
    Action { action: String, place: String },
    #[error("{what} in {place} is not supported: {why}")]
    Unsupported {
        what: String,
        place: String,
        why: &'static str,
    },
    #[error("unknown operator {op:?} in {place}")]
    Op { op: String, place: String },
    #[error("argument index {index} in {place} is out of range (0 to 5)")]
    ArgIndex { index: u32, place: String },
    #[error("errnoRet {value} in {place} is out of range (0 to 4095)")]
    Errno { value: u32, place: String },
    #[error("unknown capability {cap:?} in {place}")]
    Cap { cap: String, place: String },
    #[error("bad minKernel {value:?} in {place} (MAJOR.MINOR)")]
    MinKernel { value: String, place: String },
    #[error("unknown architecture {arch:?} in the profile")]
    Arch { arch: String },
    #[error("unknown seccomp flag {flag:?} in the profile")]
    Flag { flag: String },
    #[error("cannot tell the running kernel's version (for minKernel)")]
    Kernel,
    #[error("compile the seccomp rule for {syscall}")]
    Backend {
        syscall: String,
        #[source]
        source: seccompiler::BackendError,
    },
    #[error("the seccomp filter has {0} instructions; the kernel takes at most 4096")]
    TooLarge(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::spec::DEFAULT_CAPS;
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::time::{Duration, Instant};

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }
    const I386: u32 = 0x4000_0003;

    /// What `prog` answers, by a BPF interpreter of the instructions the module
    /// emits (no kernel involved).
    fn eval(prog: &Program, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |k: u32| -> u32 {
            match k {
                0 => nr,
                4 => arch,
                16..=63 if k.is_multiple_of(4) => {
                    let a = args[(k as usize - 16) / 8];
                    if k.is_multiple_of(8) {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                _ => panic!("load at {k}"),
            }
        };
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog.insns[pc];
            pc += 1;
            let code = u32::from(i.code);
            let skip = |t: bool| usize::from(if t { i.jt } else { i.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = word(i.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += skip(a == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += skip(a > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += skip(a >= i.k),
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                _ => panic!("opcode {code:#x} at {}", pc - 1),
            }
        }
    }

    fn nr(name: &str) -> u32 {
        number(name).unwrap_or_else(|| panic!("no syscall {name}"))
    }

    /// The answer to syscall `name` with `args` on this architecture.
    fn answer(prog: &Program, name: &str, args: [u64; 6]) -> u32 {
        eval(prog, AUDIT_ARCH, nr(name), args)
    }

    fn plain(prog: &Program, name: &str) -> u32 {
        answer(prog, name, [0; 6])
    }

    fn docker() -> Program {
        compile(&default_profile(), DEFAULT_CAPS, false).unwrap()
    }

    #[test]
    fn table_is_sorted_and_names_the_default_profile() {
        assert!(table::NATIVE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(table::EITHER.windows(2).all(|w| w[0] <= w[1]));
        assert!(table::FOREIGN.windows(2).all(|w| w[0] < w[1]));
        for f in table::FOREIGN {
            assert!(table::EITHER.binary_search(f).is_err(), "{f} in both lists");
        }
        for d in DEFAULT {
            for n in d.names {
                assert!(
                    table::EITHER.binary_search(n).is_ok(),
                    "{n}: not x86_64/aarch64"
                );
            }
        }
        for &(name, n) in table::NATIVE {
            assert_eq!(number(name), Some(n as u32), "{name}");
        }
        for name in ["", "opne", "chown32", "readx", "rea"] {
            assert_eq!(number(name), None, "{name}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!((nr("read"), nr("open"), nr("io_pgetevents")), (0, 2, 333));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(
            (nr("read"), number("open"), nr("io_pgetevents")),
            (63, None, 292)
        );
        assert_eq!((nr("clone3"), nr("fchmodat2")), (435, 452));
    }

    #[test]
    fn default_allows_and_refuses_what_docker_does() {
        let p = docker();
        for name in [
            "read",
            "write",
            "getpid",
            "execve",
            "openat",
            "fchmodat2",
            "chroot",
        ] {
            assert_eq!(plain(&p, name), ALLOW, "{name}");
        }
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "open_by_handle_at",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "settimeofday",
            "clock_settime",
            "adjtimex",
            "quotactl",
            "lookup_dcookie",
            "name_to_handle_at",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "ptrace",
            "unshare",
            "setns",
            "process_vm_readv",
        ] {
            assert_eq!(plain(&p, name), errno(libc::EPERM), "{name}");
        }
        assert_eq!(plain(&p, "clone3"), errno(libc::ENOSYS));
        let clone = |flags: i32| answer(&p, "clone", [flags as u64, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD), ALLOW);
        assert_eq!(
            clone(libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND),
            ALLOW
        );
        for ns in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
        ] {
            assert_eq!(clone(ns | libc::SIGCHLD), errno(libc::EPERM), "{ns:#x}");
        }
        let persona = |v: u64| answer(&p, "personality", [v, 0, 0, 0, 0, 0]);
        for v in [0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(persona(v), ALLOW, "{v:#x}");
        }
        for v in [0x0040000, 0x0400000, 0x1_0000_0000, 0xffff_fffe] {
            assert_eq!(persona(v), errno(libc::EPERM), "{v:#x}");
        }
        let socket = |family: u64| answer(&p, "socket", [family, 1, 0, 0, 0, 0]);
        assert_eq!(socket(libc::AF_INET as u64), ALLOW);
        assert_eq!(socket(libc::AF_NETLINK as u64), ALLOW);
        assert_eq!(socket(libc::AF_VSOCK as u64), errno(libc::EPERM));
        // The kernel reads an int: the upper half must not hide AF_VSOCK.
        assert_eq!(socket(libc::AF_VSOCK as u64 | 1 << 32), errno(libc::EPERM));
        let netlink =
            |proto: u64| answer(&p, "socket", [libc::AF_NETLINK as u64, 3, proto, 0, 0, 0]);
        assert_eq!(netlink(libc::NETLINK_ROUTE as u64), ALLOW);
        assert_eq!(netlink(libc::NETLINK_AUDIT as u64), ALLOW);
        assert_eq!(
            netlink(libc::NETLINK_KOBJECT_UEVENT as u64),
            errno(libc::EPERM)
        );
        assert_eq!(
            netlink(libc::NETLINK_KOBJECT_UEVENT as u64 | 1 << 32),
            errno(libc::EPERM)
        );
        // Another family with protocol 15 is not a uevent socket.
        assert_eq!(
            answer(&p, "socket", [libc::AF_INET as u64, 1, 15, 0, 0, 0]),
            ALLOW
        );
    }

    #[test]
    fn every_syscall_number_finds_its_answer() {
        // The binary search against the plain meaning of the profile, for every
        // syscall of this architecture and the numbers around them.
        let p = docker();
        let conditional = ["socket", "personality", "clone", "clone3"];
        let also = ["chroot", "arch_prctl", "modify_ldt"]; // caps, arches
        let last = table::NATIVE
            .iter()
            .filter(|(n, _)| ALLOWED.contains(n) || also.contains(n) || conditional.contains(n))
            .map(|&(_, nr)| nr as u32)
            .max()
            .unwrap();
        for &(name, nr) in table::NATIVE {
            if conditional.contains(&name) {
                continue;
            }
            let want = if ALLOWED.contains(&name) || also.contains(&name) {
                ALLOW
            } else if nr as u32 > last {
                errno(libc::ENOSYS)
            } else {
                errno(libc::EPERM)
            };
            assert_eq!(eval(&p, AUDIT_ARCH, nr as u32, [0; 6]), want, "{name}");
        }
        for nr in 0..=last {
            if table::NATIVE.iter().all(|&(_, n)| n as u32 != nr) {
                assert_eq!(eval(&p, AUDIT_ARCH, nr, [0; 6]), errno(libc::EPERM), "{nr}");
            }
        }
    }

    #[test]
    fn long_rule_lists_jump_far() {
        // 60 conditions on read: its code is longer than a conditional jump reaches.
        let rules: Vec<String> = (0..60)
            .map(|v| {
                format!(
                    r#"{{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":{},
                    "args":[{{"index":0,"value":{v},"op":"SCMP_CMP_EQ"}}]}}"#,
                    100 + v
                )
            })
            .collect();
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{}]}}"#,
            rules.join(",")
        );
        let prog = compile(&parse_profile(json.as_bytes()).unwrap(), 0, false).unwrap();
        for v in [0u64, 1, 30, 59] {
            assert_eq!(
                answer(&prog, "read", [v, 0, 0, 0, 0, 0]),
                errno(100 + v as i32)
            );
        }
        assert_eq!(answer(&prog, "read", [60, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&prog, "read", [1 << 32, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(plain(&prog, "write"), ALLOW);
        assert_eq!(plain(&prog, "getpid"), ALLOW);
    }

    #[test]
    fn arch_x32_and_numbers_past_the_profile() {
        let p = docker();
        assert_eq!(eval(&p, I386, 20, [0; 6]), KILL);
        assert_eq!(eval(&p, 0x4000_0028, 20, [0; 6]), KILL);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            eval(&p, AUDIT_ARCH, 0x4000_0000 | nr("getpid"), [0; 6]),
            KILL
        );
        // A tracer's skipped syscall runs nothing.
        assert_eq!(eval(&p, AUDIT_ARCH, u32::MAX, [0; 6]), ALLOW);
        // Newer than the profile: ENOSYS (glibc falls back); an unlisted older one:
        // EPERM.
        assert_eq!(eval(&p, AUDIT_ARCH, 470, [0; 6]), errno(libc::ENOSYS));
        assert_eq!(eval(&p, AUDIT_ARCH, 1000, [0; 6]), errno(libc::ENOSYS));
        assert_eq!(plain(&p, "cachestat"), errno(libc::EPERM));
        // Allowing defaults get no ENOSYS stub.
        let open = parse_profile(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let open = compile(&open, 0, false).unwrap();
        assert_eq!(eval(&open, AUDIT_ARCH, 1000, [0; 6]), ALLOW);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            eval(&open, AUDIT_ARCH, 0x4000_0000 | nr("getpid"), [0; 6]),
            KILL
        );
        assert_eq!(eval(&open, I386, 20, [0; 6]), KILL);
    }

    #[test]
    fn capabilities_add_what_docker_adds() {
        let with = |cap: u64| compile(&default_profile(), DEFAULT_CAPS | cap, false).unwrap();
        let admin = with(CAP_SYS_ADMIN);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone3",
            "name_to_handle_at",
        ] {
            assert_eq!(plain(&admin, name), ALLOW, "{name}");
        }
        let ns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(answer(&admin, "clone", [ns, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(plain(&admin, "keyctl"), errno(libc::EPERM));
        assert_eq!(plain(&admin, "io_uring_setup"), errno(libc::EPERM));
        let cases: [(u64, &[&str]); 10] = [
            (
                CAP_SYS_PTRACE,
                &["ptrace", "process_vm_readv", "kcmp", "pidfd_getfd"],
            ),
            (CAP_SYS_TIME, &["settimeofday", "clock_settime", "adjtimex"]),
            (CAP_SYS_BOOT, &["reboot"]),
            (
                CAP_SYS_MODULE,
                &["init_module", "finit_module", "delete_module"],
            ),
            (CAP_SYS_PACCT, &["acct"]),
            (CAP_SYS_NICE, &["mbind", "set_mempolicy"]),
            (CAP_SYSLOG, &["syslog"]),
            (CAP_BPF, &["bpf"]),
            (CAP_PERFMON, &["perf_event_open"]),
            (CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
        ];
        let docker = docker();
        for (cap, names) in cases {
            let p = with(cap);
            for name in names {
                assert_eq!(plain(&p, name), ALLOW, "{name} with {cap:#x}");
                assert_eq!(plain(&docker, name), errno(libc::EPERM), "{name}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(plain(&with(CAP_SYS_RAWIO), "iopl"), ALLOW);
        // chroot comes with CAP_SYS_CHROOT, which Docker's set has.
        let bare = compile(&default_profile(), 0, false).unwrap();
        assert_eq!(plain(&bare, "chroot"), errno(libc::EPERM));
        assert_eq!(plain(&bare, "read"), ALLOW);
    }

    #[test]
    fn suppress_sync_returns_zero() {
        let p = compile(&default_profile(), DEFAULT_CAPS, true).unwrap();
        for name in SYNC {
            assert_eq!(plain(&p, name), errno(0), "{name}");
        }
        assert_eq!(plain(&p, "read"), ALLOW);
        assert_eq!(plain(&docker(), "fsync"), ALLOW);
        let open = parse_profile(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let open = compile(&open, 0, true).unwrap();
        assert_eq!(plain(&open, "fdatasync"), errno(0));
        assert_eq!(plain(&open, "mount"), ALLOW);
    }

    #[test]
    fn parses_docker_json() {
        let p = parse_profile(
            br#"{
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
                "syscalls": [
                    {"names": ["read", "write", "chown32", "getpidd"], "action": "SCMP_ACT_ALLOW"},
                    {"name": "getcwd", "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                    {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"names": ["tkill"], "action": "SCMP_ACT_TRAP"},
                    {"names": ["tgkill"], "action": "SCMP_ACT_LOG", "comment": "x"},
                    {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                    {"names": ["gettid"], "action": "SCMP_ACT_KILL"},
                    {"names": ["lseek"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_LE"}]},
                    {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 1, "value": 3, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
                    {"names": ["dup3"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"},
                              {"index": 1, "value": 10, "op": "SCMP_CMP_LT"}]},
                    {"names": ["dup2"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
                              {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                    {"names": ["umount2"], "action": "SCMP_ACT_ALLOW",
                     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                    {"names": ["pipe2"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"arches": ["s390x"]}},
                    {"names": ["pipe"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"minKernel": "4.8"}},
                    {"names": ["flock"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"minKernel": "99.0"}}
                ]
            }"#,
        )
        .unwrap();
        assert_eq!(p.unknown_syscalls(), ["getpidd"]);
        let prog = compile_on(&p, 0, false, || Ok((6, 1))).unwrap();
        let a = |name: &str, args: [u64; 6]| answer(&prog, name, args);
        let z = [0; 6];
        assert_eq!(a("read", z), ALLOW);
        assert_eq!(a("getcwd", z), errno(42));
        assert_eq!(a("kill", z), KILL);
        assert_eq!(a("tkill", z), libc::SECCOMP_RET_TRAP);
        assert_eq!(a("tgkill", z), libc::SECCOMP_RET_LOG);
        assert_eq!(a("getppid", z), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(a("gettid", z), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(a("socket", z), errno(38));
        assert_eq!(a("lseek", [0, 0, 1, 0, 0, 0]), ALLOW);
        assert_eq!(a("lseek", [0, 0, 2, 0, 0, 0]), errno(38));
        assert_eq!(a("lseek", [0, 0, 1 << 32, 0, 0, 0]), errno(38));
        assert_eq!(a("fcntl", [0, 5, 0, 0, 0, 0]), ALLOW);
        assert_eq!(a("fcntl", [0, 6, 0, 0, 0, 0]), errno(38));
        assert_eq!(a("dup3", [6, 9, 0, 0, 0, 0]), ALLOW);
        assert_eq!(a("dup3", [6, 10, 0, 0, 0, 0]), errno(38));
        assert_eq!(a("dup3", [5, 9, 0, 0, 0, 0]), errno(38));
        // Two conditions on one argument: either (runc).
        assert_eq!(a("dup2", [5, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(a("dup2", [7, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(a("dup2", [6, 0, 0, 0, 0, 0]), errno(38));
        assert_eq!(a("mount", z), errno(38));
        assert_eq!(a("umount2", z), ALLOW);
        assert_eq!(a("pipe2", z), errno(38));
        assert_eq!(a("pipe", z), ALLOW);
        assert_eq!(a("flock", z), errno(38));
        let admin = compile_on(&p, CAP_SYS_ADMIN, false, || Ok((6, 1))).unwrap();
        assert_eq!(answer(&admin, "mount", z), ALLOW);
        assert_eq!(answer(&admin, "umount2", z), errno(38));
        // The default is ENOSYS already: no stub needed, nothing changes.
        assert_eq!(eval(&prog, AUDIT_ARCH, 1000, z), errno(38));
    }

    #[test]
    fn first_unconditional_rule_decides() {
        let p = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}]},
                {"names": ["close"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#,
        )
        .unwrap();
        let prog = compile(&p, 0, false).unwrap();
        assert_eq!(answer(&prog, "read", [0; 6]), errno(5));
        // A rule with the default's action is dropped (runc): the next one decides.
        assert_eq!(answer(&prog, "write", [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&prog, "write", [3, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&prog, "write", [0; 6]), errno(1));
        // Wants a bit its mask removes: never holds (libseccomp).
        assert_eq!(answer(&prog, "close", [3, 0, 0, 0, 0, 0]), errno(1));
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let err = |json: &str| parse_profile(json.as_bytes()).unwrap_err().to_string();
        let one = |entry: &str| {
            err(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{entry}]}}"#
            ))
        };
        assert_eq!(
            one(r#"{"names":["read"],"action":"SCMP_ACT_ALOW"}"#),
            r#"unknown action "SCMP_ACT_ALOW" in syscalls[0] (read)"#
        );
        assert_eq!(
            one(
                r#"{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQUAL"}]}"#
            ),
            r#"unknown operator "SCMP_CMP_EQUAL" in syscalls[0] (read)"#
        );
        assert!(one(r#"{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}"#)
            .starts_with("argument index 6 in syscalls[0] (read)"));
        assert!(one(r#"{"names":["read"],"action":"SCMP_ACT_NOTIFY"}"#)
            .starts_with("SCMP_ACT_NOTIFY in syscalls[0] (read) is not supported"));
        assert!(
            one(r#"{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}"#)
                .starts_with("errnoRet 70000 in syscalls[0] (read)")
        );
        assert!(one(
            r#"{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMN"]}}"#
        )
        .starts_with(r#"unknown capability "CAP_SYS_ADMN" in syscalls[0] (mount)"#));
        assert!(one(
            r#"{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}"#
        )
        .starts_with(r#"bad minKernel "four""#));
        assert!(
            one(r#"{"name":"read","names":["write"],"action":"SCMP_ACT_ALLOW"}"#)
                .contains("both name and names")
        );
        assert!(one(r#"{"names":[],"action":"SCMP_ACT_ALLOW"}"#).contains("names no syscall"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("in defaultAction"));
        assert!(err(r#"{"syscalls":[]}"#).contains("no defaultAction"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#)
            .contains("both architectures and archMap"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#)
                .contains("SCMP_ARCH_Z80")
        );
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}"#
        )
        .contains("not supported"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock"}"#)
                .contains("not supported")
        );
        assert!(err("{").starts_with("not a seccomp profile"));
        let missing = load_profile(Path::new("/nonexistent/profile.json")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "read seccomp profile /nonexistent/profile.json"
        );
        // Known elsewhere (32-bit ABIs, the other architecture): not typos.
        let p = parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":
            ["chown32","_llseek","socketcall","arch_prctl","open","fstatat64","opne","opne","fsync"],
            "action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert_eq!(p.unknown_syscalls(), ["opne"]);
    }

    /// The built-in profile as Docker's JSON: what moby's default.json says, trimmed.
    fn default_as_json() -> String {
        let caps = |bits: u64| -> Vec<String> {
            (0..64)
                .filter(|n| bits & 1 << n != 0)
                .map(|n| format!("CAP_{}", CAP_NAMES[n]))
                .collect()
        };
        let syscalls: Vec<serde_json::Value> = DEFAULT
            .iter()
            .map(|d| {
                let args: Vec<serde_json::Value> = d
                    .args
                    .iter()
                    .map(|a| {
                        let op = match a.op {
                            Op::Eq => "SCMP_CMP_EQ",
                            Op::Ne => "SCMP_CMP_NE",
                            Op::MaskedEq => "SCMP_CMP_MASKED_EQ",
                            _ => unreachable!(),
                        };
                        serde_json::json!({"index": a.index, "value": a.value,
                            "valueTwo": a.value_two, "op": op})
                    })
                    .collect();
                let mut v = serde_json::json!({"names": d.names, "action": "SCMP_ACT_ALLOW",
                    "args": args, "includes": {"caps": caps(d.caps), "arches": d.arches},
                    "excludes": {"caps": caps(d.not_caps)}});
                if let Action::Errno(e) = d.action {
                    v["action"] = "SCMP_ACT_ERRNO".into();
                    v["errnoRet"] = e.into();
                }
                v
            })
            .collect();
        serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": syscalls})
        .to_string()
    }

    #[test]
    fn default_profile_round_trips_through_docker_json() {
        let json = default_as_json();
        let parsed = parse_profile(json.as_bytes()).unwrap();
        assert!(parsed.unknown_syscalls().is_empty());
        let mut built = default_profile();
        // JSON cannot say "low 32 bits" (the socket rule).
        for r in &mut built.rules {
            for a in &mut r.args {
                a.low32 = false;
            }
        }
        assert_eq!(parsed, built);
    }

    fn median(mut f: impl FnMut()) -> Duration {
        let mut times: Vec<Duration> = (0..50)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        times.sort();
        times[25]
    }

    #[test]
    fn timing() {
        let p = default_profile();
        let len = compile(&p, DEFAULT_CAPS, false).unwrap().len();
        let compile_time = median(|| {
            std::hint::black_box(compile(std::hint::black_box(&p), DEFAULT_CAPS, false).unwrap());
        });
        let build = median(|| {
            std::hint::black_box(default_profile());
        });
        let json = default_as_json();
        let parse = median(|| {
            std::hint::black_box(parse_profile(json.as_bytes()).unwrap());
        });
        eprintln!(
            "seccomp: compile(default_profile(), Docker's caps, false): median {compile_time:?} \
             of 50, {len} instructions; default_profile() {build:?}; parse_profile of it as \
             Docker JSON ({} bytes) {parse:?}",
            json.len()
        );
        assert!(len < MAX_INSNS);
    }

    // Real kernel: a forked child installs the filter and tries syscalls.

    /// -errno for a failed syscall, else its result.
    fn sys(r: libc::c_long) -> i64 {
        if r < 0 {
            -i64::from(super::errno())
        } else {
            r
        }
    }

    /// Forks: the child sets no_new_privs, installs `prog` (if any), runs `probe` and
    /// sends the results through a pipe. The child calls raw syscalls only (no
    /// allocation: the test harness has other threads). Err: the signal that killed
    /// the child.
    fn in_child<const N: usize>(
        prog: Option<&Program>,
        probe: fn() -> [i64; N],
    ) -> Result<[i64; N], i32> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child below makes raw syscalls and _exits; it allocates nothing
        // and takes no lock another thread may hold.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let code = (|| {
                if let Some(p) = prog {
                    // SAFETY: integer arguments only.
                    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                        return 101;
                    }
                    if p.install().is_err() {
                        return 102;
                    }
                }
                let r = probe();
                let size = std::mem::size_of_val(&r);
                // SAFETY: writes `size` bytes of `r`, which lives across the call.
                if unsafe { libc::write(fds[1], r.as_ptr().cast(), size) } != size as isize {
                    return 103;
                }
                0
            })();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: fds[1] is ours; the child has its copy.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is ours and open; File takes it over.
        let mut rd = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        let mut buf = Vec::new();
        rd.read_to_end(&mut buf).unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFSIGNALED(status) {
            return Err(libc::WTERMSIG(status));
        }
        assert_eq!(libc::WEXITSTATUS(status), 0, "child failed before probing");
        let mut out = [0i64; N];
        assert_eq!(buf.len(), 8 * N);
        for (o, b) in out.iter_mut().zip(buf.chunks(8)) {
            *o = i64::from_ne_bytes(b.try_into().unwrap());
        }
        Ok(out)
    }

    /// clone(flags) without a new stack (a fork); the child exits at once. 1 if it
    /// worked.
    fn clone_probe(flags: libc::c_long) -> i64 {
        // SAFETY: without CLONE_VM the child has its own copy of the memory and
        // returns here with 0, and exits straight away.
        let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if r == 0 {
            // SAFETY: ends the clone child.
            unsafe { libc::syscall(libc::SYS_exit_group, 0) };
        }
        if r > 0 {
            // SAFETY: reaps our own child; null status and rusage are allowed.
            unsafe {
                libc::wait4(
                    r as libc::pid_t,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                )
            };
            return 1;
        }
        sys(r)
    }

    const PROBES: usize = 17;
    /// unshare is last: in the control child it works, and what follows would run
    /// in a new user namespace.
    const NAMES: [&str; PROBES] = [
        "clone3",
        "keyctl",
        "mount",
        "io_uring_setup",
        "perf_event_open",
        "userfaultfd",
        "bpf",
        "getpid",
        "fork (clone SIGCHLD)",
        "clone(CLONE_NEWUSER)",
        "personality(0xffffffff)",
        "personality(ADDR_NO_RANDOMIZE)",
        "socket(AF_VSOCK)",
        "ptrace",
        "socket(AF_NETLINK)",
        "socket(NETLINK_KOBJECT_UEVENT)",
        "unshare(CLONE_NEWUSER)",
    ];

    fn probe_default() -> [i64; PROBES] {
        // SAFETY: raw syscalls (all of these) with integer arguments, null pointers
        // the kernel rejects, or static NUL-terminated strings; none touches memory
        // of ours but what is passed.
        unsafe {
            [
                sys(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0)),
                sys(libc::syscall(libc::SYS_keyctl, 9999, 0, 0, 0, 0)),
                sys(libc::syscall(
                    libc::SYS_mount,
                    std::ptr::null::<u8>(),
                    c"/nonexistent-locker-seccomp-probe".as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                    std::ptr::null::<u8>(),
                )),
                sys(libc::syscall(
                    libc::SYS_io_uring_setup,
                    0,
                    std::ptr::null::<u8>(),
                )),
                sys(libc::syscall(
                    libc::SYS_perf_event_open,
                    std::ptr::null::<u8>(),
                    0,
                    -1,
                    -1,
                    0,
                )),
                sys(libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC)),
                sys(libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0)),
                sys(libc::syscall(libc::SYS_getpid)),
                clone_probe(libc::SIGCHLD as libc::c_long),
                clone_probe((libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long),
                sys(libc::syscall(libc::SYS_personality, 0xffff_ffffu64)),
                sys(libc::syscall(libc::SYS_personality, 0x0040000u64)),
                sys(libc::syscall(
                    libc::SYS_socket,
                    libc::AF_VSOCK,
                    libc::SOCK_STREAM,
                    0,
                )),
                sys(libc::syscall(libc::SYS_ptrace, 0x7fff, 0, 0, 0)),
                sys(libc::syscall(
                    libc::SYS_socket,
                    libc::AF_NETLINK,
                    libc::SOCK_RAW,
                    libc::NETLINK_ROUTE,
                )),
                sys(libc::syscall(
                    libc::SYS_socket,
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM,
                    libc::NETLINK_KOBJECT_UEVENT,
                )),
                sys(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)),
            ]
        }
    }

    fn is_root() -> bool {
        // SAFETY: no arguments.
        let uid = unsafe { libc::geteuid() };
        uid == 0
    }

    #[test]
    fn kernel_enforces_the_default_profile() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let prog = docker();
        let got = in_child(Some(&prog), probe_default).expect("child killed");
        let control = in_child(None, probe_default).expect("control child killed");
        let (eperm, enosys) = (-i64::from(libc::EPERM), -i64::from(libc::ENOSYS));
        let want = [
            enosys, eperm, eperm, eperm, eperm, eperm, eperm, 1, 1, eperm, 0, eperm, eperm, eperm,
            0, eperm, eperm,
        ];
        for i in 0..PROBES {
            let ok = match want[i] {
                1 => got[i] >= 1,
                0 => got[i] >= 0,
                w => got[i] == w,
            };
            assert!(ok, "{}: got {}, want {}", NAMES[i], got[i], want[i]);
        }
        // Not vacuous: without the filter the refused probes answer otherwise.
        let io_uring_off = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .is_ok_and(|s| s.trim() != "0");
        for i in 0..PROBES {
            if want[i] >= 0 {
                assert!(
                    control[i] >= want[i],
                    "control {}: {}",
                    NAMES[i],
                    control[i]
                );
            } else if !(NAMES[i] == "io_uring_setup" && io_uring_off) {
                assert_ne!(control[i], want[i], "control {} answers the same", NAMES[i]);
            }
        }
    }

    #[test]
    fn kernel_suppresses_sync() {
        if !is_root() {
            return;
        }
        fn probe() -> [i64; 5] {
            const BAD: libc::c_long = 9999;
            // SAFETY: syscalls on a descriptor that is not open, or on an address
            // the kernel rejects; nothing of ours is touched.
            unsafe {
                [
                    sys(libc::syscall(libc::SYS_fsync, BAD)),
                    sys(libc::syscall(libc::SYS_fdatasync, BAD)),
                    sys(libc::syscall(libc::SYS_syncfs, BAD)),
                    sys(libc::syscall(libc::SYS_sync_file_range, BAD, 0, 0, 0)),
                    sys(libc::syscall(libc::SYS_msync, 1, 4096, libc::MS_SYNC)),
                ]
            }
        }
        let prog = compile(&default_profile(), DEFAULT_CAPS, true).unwrap();
        assert_eq!(in_child(Some(&prog), probe), Ok([0; 5]));
        let control = in_child(None, probe).unwrap();
        assert!(control.iter().all(|&r| r < 0), "{control:?}");
        // fsync of a real file: 0, as it is without the filter.
        let f = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        FD.store(fd, std::sync::atomic::Ordering::SeqCst);
        fn real() -> [i64; 1] {
            let fd = FD.load(std::sync::atomic::Ordering::SeqCst);
            // SAFETY: fsync of the open temporary file.
            [sys(unsafe { libc::syscall(libc::SYS_fsync, fd) })]
        }
        assert_eq!(in_child(Some(&prog), real), Ok([0]));
    }

    static FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    #[test]
    fn kernel_applies_a_docker_json_profile() {
        if !is_root() {
            return;
        }
        let p = parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ALLOW",
                "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                         "SECCOMP_FILTER_FLAG_TSYNC"],
                "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":42}]}"#,
        )
        .unwrap();
        let prog = compile(&p, DEFAULT_CAPS, false).unwrap();
        let flags = libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        assert_eq!(prog.flags, flags);
        fn probe() -> [i64; 2] {
            let mut buf = [0u8; 4096];
            // SAFETY: getcwd writes at most buf.len() bytes into buf.
            let cwd = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: no arguments.
            [sys(cwd), sys(unsafe { libc::syscall(libc::SYS_getpid) })]
        }
        let got = in_child(Some(&prog), probe).unwrap();
        assert_eq!(got[0], -42);
        assert!(got[1] > 0);
        assert!(in_child(None, probe).unwrap()[0] > 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn kernel_kills_x32_and_i386_syscalls() {
        if !is_root() {
            return;
        }
        fn x32() -> [i64; 1] {
            // SAFETY: getpid through the x32 ABI: no arguments.
            [sys(unsafe {
                libc::syscall(0x4000_0000 | libc::SYS_getpid)
            })]
        }
        fn i386() -> [i64; 1] {
            let r: i64;
            // SAFETY: int 0x80 enters the i386 ABI; eax 20 is its getpid, which takes
            // no arguments. The kernel may clobber r8-r11 on this path.
            unsafe {
                std::arch::asm!("int 0x80", inlateout("rax") 20i64 => r,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
            }
            [r]
        }
        let prog = docker();
        assert_eq!(in_child(Some(&prog), x32), Err(libc::SIGSYS));
        // Control: without the filter it does not die (ENOSYS without x32 support).
        assert!(in_child(None, x32).is_ok());
        match in_child(None, i386) {
            Ok([pid]) if pid > 0 => assert_eq!(in_child(Some(&prog), i386), Err(libc::SIGSYS)),
            other => eprintln!("no i386 emulation here ({other:?}): i386 arch not tested"),
        }
    }
}
