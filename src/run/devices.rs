//! Device access rules, and the cgroup v2 filter that enforces them.
//!
//! cgroup v1 has a `devices` controller (`devices.allow` lines, see [`DeviceRule::v1_line`]);
//! cgroup v2 has none. There the kernel runs every `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! attached to the task's cgroup and its ancestors on each open or mknod of a device
//! node, and refuses access (EPERM) unless all of them return 1. [`attach`] builds such
//! a program from a rule list, loads it and attaches it to one cgroup directory, as
//! runc, crun and youki do.
//!
//! The program ([`program`], pure) reads `struct bpf_cgroup_dev_ctx { u32 access_type;
//! u32 major; u32 minor; }`, where `access_type` is `(access << 16) | type`, and tests
//! the rules in order: the first rule that matches the device's type, major and minor
//! and whose access covers every requested bit decides (allow → 1, deny → 0); no match
//! denies. A rule that matches everything ends the program (the verifier refuses
//! unreachable instructions); rules that can match no device are left out.
//!
//! Lifetime: the attachment holds its own reference to the program, so the program fd
//! is closed once attached and the filter lives exactly as long as the cgroup. It is
//! attached with `BPF_F_ALLOW_MULTI`: programs already on the cgroup or its ancestors
//! (systemd attaches its own) keep running, and each can only narrow access.
//!
//! Privilege: loading the program needs CAP_BPF (or CAP_SYS_ADMIN) in the initial user
//! namespace, so root inside a user namespace is refused too. That refusal (EPERM from
//! `BPF_PROG_LOAD`) is [`DeviceError::NotPermitted`], distinct from every other failure,
//! so a rootless run can recognise it and fall back to `nodev` mounts, which keep device
//! nodes unusable without a filter. An EPERM from the attach step is not that case
//! (after a successful load it means an ancestor holds an exclusive device program)
//! and is reported as [`DeviceError::Failed`].
//!
//! Kernel caveats: device programs and `BPF_F_ALLOW_MULTI` need Linux 4.15. Before 5.11
//! the kernel charges programs to RLIMIT_MEMLOCK and a low limit also shows as EPERM
//! from the load, i.e. as `NotPermitted`; locker does not raise the limit, because the
//! container would inherit it.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Which device nodes a rule covers (v1 letters `c`, `b`, `a`). Block and All come
/// from OCI configs' `linux.resources.devices` (the default list has only Char).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Kind {
    Char,
    Block,
    All,
}

/// A set of device access bits, stored as the kernel's `BPF_DEVCG_ACC_*` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access(u32);

impl Access {
    #[cfg(test)]
    pub(crate) const NONE: Access = Access(0);
    pub(crate) const MKNOD: Access = Access(1);
    pub(crate) const READ: Access = Access(2);
    pub(crate) const WRITE: Access = Access(4);
    pub(crate) const RWM: Access = Access(7);

    pub(crate) const fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    pub(crate) const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kernel's bit mask (`BPF_DEVCG_ACC_*`).
    pub(crate) const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Access {
    type Output = Access;
    fn bitor(self, other: Access) -> Access {
        self.union(other)
    }
}

impl fmt::Display for Access {
    /// v1 order: "rwm", "r", "rw".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One device rule; `None` as major or minor is the v1 `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub(crate) kind: Kind,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: Access,
    pub(crate) allow: bool,
}

const fn allow_char(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access: Access::RWM,
        allow: true,
    }
}

/// What a container may use: null, zero, full, random, urandom, tty, console, ptmx,
/// and the pty slaves (136:*). Everything else is denied.
pub(crate) const DEFAULT_ALLOW: &[DeviceRule] = &[
    allow_char(1, Some(3)),
    allow_char(1, Some(5)),
    allow_char(1, Some(7)),
    allow_char(1, Some(8)),
    allow_char(1, Some(9)),
    allow_char(5, Some(0)),
    allow_char(5, Some(1)),
    allow_char(5, Some(2)),
    allow_char(136, None),
];

/// dev_t splits into a 12-bit major and a 20-bit minor: larger numbers name no device.
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;

impl DeviceRule {
    /// The rule in v1 syntax, "c 1:3 rwm" or "c 136:* rwm"; written to `devices.allow`
    /// or, for a deny rule, `devices.deny`.
    pub(crate) fn v1_line(&self) -> String {
        let kind = match self.kind {
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::All => 'a',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        format!(
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            self.access
        )
    }

    /// False for rules no device access can match (no access bits, or a number out of
    /// dev_t's range); such rules are not emitted.
    fn can_match(&self) -> bool {
        !self.access.is_empty()
            && self.major.is_none_or(|m| m <= MAX_MAJOR)
            && self.minor.is_none_or(|m| m <= MAX_MINOR)
    }
}

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    code: u8,
    /// `dst_reg:4, src_reg:4` as C bitfields: dst in the low nibble on little endian.
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<BpfInsn>() == 8);

// Opcodes used here (class | operation | source).
const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x05 | 0x50 | 0x08; // BPF_JMP | BPF_JNE | BPF_X
const JMP_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

// Registers: R0 result, R1 context (then scratch), R2..R5 the unpacked context.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

// BPF_DEVCG_DEV_*
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        BpfInsn {
            code,
            regs,
            off,
            imm,
        }
    }

    #[cfg(test)]
    fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0x0f
        } else {
            self.regs >> 4
        }
    }

    #[cfg(test)]
    fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0x0f
        }
    }

    fn is_jne(&self) -> bool {
        self.code == JMP_JNE_K || self.code == JMP_JNE_X
    }
}

/// The filter for `rules` (see the module doc for its semantics).
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let ins = BpfInsn::new;
    let mut p = vec![
        // R2 = access_type & 0xffff (the device type)
        ins(LDX_MEM_W, R_TYPE, R1, 0, 0),
        ins(ALU32_AND_K, R_TYPE, 0, 0, 0xffff),
        // R3 = access_type >> 16 (the requested access)
        ins(LDX_MEM_W, R_ACCESS, R1, 0, 0),
        ins(ALU32_RSH_K, R_ACCESS, 0, 0, 16),
        // R4 = major, R5 = minor
        ins(LDX_MEM_W, R_MAJOR, R1, 4, 0),
        ins(LDX_MEM_W, R_MINOR, R1, 8, 0),
    ];
    for rule in rules.iter().filter(|r| r.can_match()) {
        // Each test jumps past the block when it fails; offsets are patched below.
        let mut block = Vec::new();
        match rule.kind {
            Kind::Char => block.push(ins(JMP_JNE_K, R_TYPE, 0, 0, DEV_CHAR)),
            Kind::Block => block.push(ins(JMP_JNE_K, R_TYPE, 0, 0, DEV_BLOCK)),
            Kind::All => {}
        }
        if !rule.access.contains(Access::RWM) {
            // if (R3 & access) != R3: some requested bit is not granted by this rule
            block.push(ins(ALU32_MOV_X, R1, R_ACCESS, 0, 0));
            block.push(ins(ALU32_AND_K, R1, 0, 0, rule.access.bits() as i32));
            block.push(ins(JMP_JNE_X, R1, R_ACCESS, 0, 0));
        }
        // can_match() bounds both numbers, so the immediates are positive.
        if let Some(major) = rule.major {
            block.push(ins(JMP_JNE_K, R_MAJOR, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(ins(JMP_JNE_K, R_MINOR, 0, 0, minor as i32));
        }
        let unconditional = block.is_empty();
        block.push(ins(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)));
        block.push(ins(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.is_jne() {
                // Relative to the next instruction; lands on the next block.
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        if unconditional {
            return p;
        }
    }
    p.push(ins(ALU64_MOV_K, R0, 0, 0, 0));
    p.push(ins(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// The step that failed, worded to precede the cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Open,
    Load,
    Attach,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Open => "open cgroup",
            Step::Load => "load the device filter for cgroup",
            Step::Attach => "attach the device filter to cgroup",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceError {
    /// The kernel refused to load the program (EPERM): no CAP_BPF/CAP_SYS_ADMIN in the
    /// initial user namespace. Rootless callers fall back to `nodev` mounts.
    #[error("{step} {}", path.display())]
    NotPermitted {
        step: Step,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{step} {}", path.display())]
    Failed {
        step: Step,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The verifier refused the program; `log` is the last line of its log.
    #[error("load the device filter for cgroup {} (verifier: {log})", path.display())]
    Rejected {
        path: PathBuf,
        log: String,
        #[source]
        source: io::Error,
    },
    #[error("attach the device filter to cgroup {}: not a cgroup2 directory", path.display())]
    NotCgroup2 { path: PathBuf },
}

/// Builds the filter for `rules`, loads it and attaches it to `cgroup_dir`, a cgroup2
/// directory. The attachment outlives this call and goes away with the cgroup; a
/// second call adds a second program (both must allow), it replaces nothing.
pub(crate) fn attach(cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<(), DeviceError> {
    let path = || cgroup_dir.to_path_buf();
    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(cgroup_dir)
        .map_err(|source| DeviceError::Failed {
            step: Step::Open,
            path: path(),
            source,
        })?;
    let st = nix::sys::statfs::fstatfs(&dir).map_err(|e| DeviceError::Failed {
        step: Step::Open,
        path: path(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    if st.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
        return Err(DeviceError::NotCgroup2 { path: path() });
    }
    let prog = load(&program(rules)).map_err(|e| load_error(cgroup_dir, e))?;
    attach_fd(&dir, &prog).map_err(|source| DeviceError::Failed {
        step: Step::Attach,
        path: path(),
        source,
    })
    // `prog` closes here; the attachment keeps the program.
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// No helper is called, so no GPL-only one: any license string loads.
const LICENSE: &[u8] = b"Apache\0";
/// Shown by bpftool; [a-zA-Z0-9_.], at most 15 bytes.
const PROG_NAME: &[u8] = b"locker_dev";

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type` (Linux 4.17).
/// Older kernels accept it as long as the fields they do not know are zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 72);

/// `union bpf_attr` for BPF_PROG_ATTACH, the Linux 4.15 fields.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

const _: () = assert!(std::mem::size_of::<ProgAttachAttr>() == 16);

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] prefix of `union bpf_attr`
    // for `cmd`, and the size passed is exactly its size, so the kernel reads (and for
    // some commands writes) only inside it; pointers it holds are to buffers the caller
    // keeps alive for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A failed BPF_PROG_LOAD: the errno, and the verifier's last log line when it has one.
#[derive(Debug)]
struct LoadError {
    source: io::Error,
    log: Option<String>,
}

const LOG_SIZE: usize = 64 << 10;

/// Loads `insns` as a device program. On a failure other than EPERM the load is
/// retried with the verifier log on, for the reason.
fn load(insns: &[BpfInsn]) -> Result<OwnedFd, LoadError> {
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let source = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(own_fd(fd)),
        Err(e) => e,
    };
    if source.raw_os_error() == Some(libc::EPERM) {
        return Err(LoadError { source, log: None });
    }
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // Not expected (the first attempt failed), but then it is loaded.
        Ok(fd) => Ok(own_fd(fd)),
        Err(_) => Err(LoadError {
            source,
            log: last_log_line(&log),
        }),
    }
}

fn own_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing
    // else refers to; ownership passes to the OwnedFd.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

fn last_log_line(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end])
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

fn load_error(cgroup_dir: &Path, e: LoadError) -> DeviceError {
    let path = cgroup_dir.to_path_buf();
    match e.log {
        _ if e.source.raw_os_error() == Some(libc::EPERM) => DeviceError::NotPermitted {
            step: Step::Load,
            path,
            source: e.source,
        },
        Some(log) => DeviceError::Rejected {
            path,
            log,
            source: e.source,
        },
        None => DeviceError::Failed {
            step: Step::Load,
            path,
            source: e.source,
        },
    }
}

fn attach_fd(cgroup: &File, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::time::{Duration, Instant};

    // BPF_DEVCG_ACC_* as the kernel passes them.
    const R: u32 = 2;
    const W: u32 = 4;
    const M: u32 = 1;

    /// Runs a program built here on one device access: only the opcodes `program`
    /// emits, every jump checked to land inside the program.
    fn run(p: &[BpfInsn], dev_type: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | dev_type as u32), major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst() as usize, i.src() as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(s, 1, "loads are from the context");
                    reg[d] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => reg[d] = u64::from(reg[d] as u32 & i.imm as u32),
                ALU32_RSH_K => reg[d] = u64::from(reg[d] as u32 >> i.imm),
                ALU32_MOV_X => reg[d] = u64::from(reg[s] as u32),
                ALU64_MOV_K => reg[d] = i.imm as i64 as u64,
                JMP_JNE_K | JMP_JNE_X => {
                    let rhs = if i.code == JMP_JNE_K {
                        i.imm as i64 as u64
                    } else {
                        reg[s]
                    };
                    if reg[d] != rhs {
                        pc += i.off as usize;
                    }
                }
                JMP_EXIT => return reg[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc < p.len(), "jump out of the program");
        }
    }

    #[test]
    fn v1_lines_match_the_v1_allow_list() {
        let lines: Vec<String> = DEFAULT_ALLOW.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(
            lines,
            [
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
            ]
        );
    }

    #[test]
    fn v1_line_spells_kinds_wildcards_and_partial_access() {
        let r = DeviceRule {
            kind: Kind::Block,
            major: None,
            minor: Some(2),
            access: Access::READ | Access::MKNOD,
            allow: false,
        };
        assert_eq!(r.v1_line(), "b *:2 rm");
        let a = DeviceRule {
            kind: Kind::All,
            major: None,
            minor: None,
            access: Access::RWM,
            allow: true,
        };
        assert_eq!(a.v1_line(), "a *:* rwm");
    }

    #[test]
    fn default_program_shape() {
        let p = program(DEFAULT_ALLOW);
        // prologue 6; eight exact rules of 5 (type, major, minor, r0, exit); 136:* has
        // no minor compare; the deny tail.
        assert_eq!(p.len(), 6 + 8 * 5 + 4 + 2);
        let tail = &p[p.len() - 2..];
        assert_eq!(tail[0], BpfInsn::new(ALU64_MOV_K, R0, 0, 0, 0));
        assert_eq!(tail[1].code, JMP_EXIT);
        // rwm rules have no access test.
        assert!(p.iter().all(|i| i.code != JMP_JNE_X));
        // The wildcard rule's block: type and major compares only, then allow.
        let pty = &p[p.len() - 6..p.len() - 2];
        assert_eq!(pty[0], BpfInsn::new(JMP_JNE_K, R_TYPE, 0, 3, DEV_CHAR));
        assert_eq!(pty[1], BpfInsn::new(JMP_JNE_K, R_MAJOR, 0, 2, 136));
        assert_eq!(pty[2], BpfInsn::new(ALU64_MOV_K, R0, 0, 0, 1));
        assert_eq!(pty[3].code, JMP_EXIT);
        assert!(!pty.iter().any(|i| i.is_jne() && i.dst() == R_MINOR));
    }

    #[test]
    fn every_jump_lands_on_the_next_block() {
        let p = program(DEFAULT_ALLOW);
        for (i, insn) in p.iter().enumerate().filter(|(_, i)| i.is_jne()) {
            let target = i + 1 + insn.off as usize;
            // A block starts after an exit.
            assert_eq!(p[target - 1].code, JMP_EXIT, "jump at {i}");
        }
    }

    #[test]
    fn default_program_decides_like_the_v1_list() {
        let p = program(DEFAULT_ALLOW);
        for (major, minor) in [(1, 3), (1, 5), (1, 9), (5, 2), (136, 0), (136, 77)] {
            for access in [R, W, M, R | W, R | W | M] {
                assert_eq!(
                    run(&p, DEV_CHAR, access, major, minor),
                    1,
                    "{major}:{minor}"
                );
            }
        }
        for (major, minor) in [(1, 11), (1, 1), (5, 3), (4, 0), (137, 0), (0, 0)] {
            assert_eq!(run(&p, DEV_CHAR, R, major, minor), 0, "{major}:{minor}");
        }
        // Same numbers, block device.
        assert_eq!(run(&p, DEV_BLOCK, R, 1, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, R, 136, 1), 0);
    }

    #[test]
    fn first_match_decides_and_access_must_cover_the_request() {
        let rules = [
            DeviceRule {
                kind: Kind::Char,
                major: Some(1),
                minor: Some(3),
                access: Access::RWM,
                allow: false,
            },
            DeviceRule {
                kind: Kind::Char,
                major: Some(1),
                minor: None,
                access: Access::READ,
                allow: true,
            },
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 0, "the earlier deny wins");
        assert_eq!(run(&p, DEV_CHAR, R, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, R | W, 1, 5), 0, "w not granted");
        assert_eq!(run(&p, DEV_CHAR, M, 1, 5), 0, "m not granted");
        // The read-only rule carries the access test.
        let test = BpfInsn::new(ALU32_AND_K, R1, 0, 0, Access::READ.bits() as i32);
        assert!(p.contains(&test));
    }

    #[test]
    fn a_catch_all_rule_ends_the_program() {
        let all = DeviceRule {
            kind: Kind::All,
            major: None,
            minor: None,
            access: Access::RWM,
            allow: true,
        };
        let p = program(&[DEFAULT_ALLOW[0], all, DEFAULT_ALLOW[1]]);
        // prologue, one exact rule, then only "allow; exit": no deny tail, nothing after.
        assert_eq!(p.len(), 6 + 5 + 2);
        assert_eq!(p[p.len() - 2], BpfInsn::new(ALU64_MOV_K, R0, 0, 0, 1));
        assert_eq!(run(&p, DEV_BLOCK, R | W | M, 8, 0), 1);
    }

    #[test]
    fn rules_that_match_nothing_are_left_out() {
        let mut r = DEFAULT_ALLOW[0];
        r.access = Access::NONE;
        let mut big = DEFAULT_ALLOW[0];
        big.major = Some(1 << 12);
        assert_eq!(program(&[r, big]), program(&[]));
        assert_eq!(program(&[]).len(), 6 + 2);
    }

    #[test]
    fn load_errors_are_classified() {
        let dir = Path::new("/sys/fs/cgroup/locker/ID");
        let e = |errno, log: Option<&str>| LoadError {
            source: io::Error::from_raw_os_error(errno),
            log: log.map(str::to_string),
        };
        let not_permitted = load_error(dir, e(libc::EPERM, None));
        assert!(matches!(not_permitted, DeviceError::NotPermitted { .. }));
        assert_eq!(
            not_permitted.to_string(),
            "load the device filter for cgroup /sys/fs/cgroup/locker/ID"
        );
        let rejected = load_error(dir, e(libc::EACCES, Some("R0 !read_ok")));
        assert_eq!(
            rejected.to_string(),
            "load the device filter for cgroup /sys/fs/cgroup/locker/ID (verifier: R0 !read_ok)"
        );
        assert!(matches!(
            load_error(dir, e(libc::EINVAL, None)),
            DeviceError::Failed { .. }
        ));
        assert_eq!(
            last_log_line(b"0: (61) r2 = *(u32 *)(r1 +0)\nbad\n\n\0junk"),
            Some("bad".into())
        );
    }

    const UNIFIED: &str = "/sys/fs/cgroup/unified";

    fn real_cgroup2() -> Option<PathBuf> {
        let root = Path::new(UNIFIED);
        #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
        let is_v2 = nix::sys::statfs::statfs(root)
            .is_ok_and(|s| s.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC);
        if !is_v2 || !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root and a cgroup2 mount at {UNIFIED}");
            return None;
        }
        Some(root.to_path_buf())
    }

    /// Cgroups this test made and the child it forked; on drop (also after a failed
    /// assertion) kills and reaps the child, then removes the cgroups.
    struct Cleanup {
        cgroups: Vec<PathBuf>,
        child: Option<libc::pid_t>,
    }

    impl Cleanup {
        fn mkdir(&mut self, path: PathBuf) -> PathBuf {
            // Fails on a leftover of the same name: never adopt a cgroup we did not make.
            fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            self.cgroups.push(path.clone());
            path
        }

        fn reap(&mut self) -> Option<libc::c_int> {
            let pid = self.child.take()?;
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            (r == pid).then_some(status)
        }
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(pid) = self.child {
                // SAFETY: signals only the child this test forked and has not reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                self.reap();
            }
            for dir in self.cgroups.iter().rev() {
                let deadline = Instant::now() + Duration::from_secs(2);
                while let Err(e) = fs::remove_dir(dir) {
                    if Instant::now() > deadline {
                        eprintln!("could not remove {}: {e}", dir.display());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// errno per probe (0 = success): open /dev/null, open /dev/zero, open /dev/kmsg,
    /// open a 1:11 node in a temp dir, mknod a 1:11 node there.
    type Probe = [i32; 5];

    /// Forks a child that joins `cgroup` and probes; everything it uses is prepared
    /// here, so the child makes only system calls.
    fn probe(guard: &mut Cleanup, cgroup: &Path, dir: &Path) -> Probe {
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let procs = c(&cgroup.join("cgroup.procs"));
        let paths = [
            c(Path::new("/dev/null")),
            c(Path::new("/dev/zero")),
            c(Path::new("/dev/kmsg")),
            c(&dir.join("kmsg")),
        ];
        let flags = [libc::O_RDWR, libc::O_RDONLY, libc::O_WRONLY, libc::O_WRONLY];
        let made = c(&dir.join("made"));
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(r, 0);
        // SAFETY: pipe2 returned two new fds that we own.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

        // SAFETY: the child only makes async-signal-safe system calls on memory
        // prepared before the fork, then _exits; it never returns into the test.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: (the whole child) each call gets NUL-terminated strings and buffers
            // that live in this process's copy of the parent's memory.
            unsafe {
                let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(-1);
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                // "0" moves the writer itself.
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(3);
                }
                libc::close(fd);
                let mut out: Probe = [0; 5];
                for (i, (p, fl)) in paths.iter().zip(flags).enumerate() {
                    let fd = libc::open(p.as_ptr(), fl | libc::O_CLOEXEC | libc::O_NOCTTY);
                    if fd < 0 {
                        out[i] = errno();
                    } else {
                        libc::close(fd);
                    }
                }
                if libc::mknod(made.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 11)) < 0 {
                    out[4] = errno();
                }
                let n = std::mem::size_of::<Probe>();
                let ok = libc::write(wr.as_raw_fd(), out.as_ptr().cast(), n) == n as isize;
                libc::_exit(if ok { 0 } else { 4 });
            }
        }
        guard.child = Some(pid);
        drop(wr);
        let status = guard.reap().expect("waitpid");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "probe child failed (status {status:#x}; 3 = join the cgroup, 4 = report)"
        );
        let mut out: Probe = [0; 5];
        let n = std::mem::size_of::<Probe>();
        // SAFETY: reads at most `n` bytes into `out`, which is `n` bytes long.
        let r = unsafe { libc::read(rd.as_raw_fd(), out.as_mut_ptr().cast(), n) };
        assert_eq!(r, n as isize, "probe report");
        let _ = fs::remove_file(dir.join("made"));
        out
    }

    fn tempdir_allowing_device_nodes() -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
        if st.flags().contains(nix::sys::statvfs::FsFlags::ST_NODEV) {
            eprintln!("SKIPPED: {} is on a nodev filesystem", dir.path().display());
            return None;
        }
        let node = CString::new(dir.path().join("kmsg").as_os_str().as_bytes()).unwrap();
        // SAFETY: `node` is a NUL-terminated path.
        let r = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 11)) };
        assert_eq!(r, 0, "mknod 1:11: {}", io::Error::last_os_error());
        Some(dir)
    }

    #[test]
    fn real_kernel_filter_denies_what_the_list_does_not_allow() {
        let Some(root) = real_cgroup2() else { return };
        let Some(dir) = tempdir_allowing_device_nodes() else {
            return;
        };
        let mut guard = Cleanup {
            cgroups: Vec::new(),
            child: None,
        };
        let name = format!("locker-test-devbpf-{}", std::process::id());
        let filtered = guard.mkdir(root.join(&name));
        let control = guard.mkdir(root.join(format!("{name}-control")));

        attach(&filtered, DEFAULT_ALLOW).expect("attach");

        let ctl = probe(&mut guard, &control, dir.path());
        assert_eq!(ctl, [0; 5], "without the filter everything opens (errnos)");

        let got = probe(&mut guard, &filtered, dir.path());
        let eperm = libc::EPERM;
        assert_eq!(
            got,
            [0, 0, eperm, eperm, eperm],
            "null, zero allowed; kmsg, the 1:11 node and mknod 1:11 denied (errnos)"
        );
    }

    #[test]
    fn attach_refuses_a_directory_that_is_not_cgroup2() {
        let dir = tempfile::tempdir().unwrap();
        let e = attach(dir.path(), DEFAULT_ALLOW).unwrap_err();
        assert!(matches!(e, DeviceError::NotCgroup2 { .. }), "{e}");
    }

    #[test]
    fn load_in_a_user_namespace_is_not_permitted() {
        if real_cgroup2().is_none() {
            return;
        }
        let p = program(DEFAULT_ALLOW);
        // SAFETY: the child makes system calls (unshare, bpf) on memory prepared before
        // the fork and _exits; the EPERM path allocates nothing.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain system calls; the child never returns into the test.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    libc::_exit(2);
                }
                let code = match load(&p) {
                    Err(e) if e.source.raw_os_error() == Some(libc::EPERM) => 0,
                    _ => 1,
                };
                libc::_exit(code);
            }
        }
        let mut guard = Cleanup {
            cgroups: Vec::new(),
            child: Some(pid),
        };
        let status = guard.reap().expect("waitpid");
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        match libc::WEXITSTATUS(status) {
            0 => {}
            2 => eprintln!("SKIPPED: user namespaces are not available"),
            c => panic!("load in a user namespace was not refused with EPERM ({c})"),
        }
    }
}
