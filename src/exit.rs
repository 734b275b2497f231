//! Exit statuses, mapped to the process's exit code in this one place (Docker's
//! convention): 0 success; `run` and `exec` return the command's own status, 128+N when
//! it died of signal N, 126 when it cannot be executed, 127 when it does not exist; 125
//! for any failure of locker itself.

use nix::sys::wait::WaitStatus;

/// How a locker command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Success,
    /// The container's command exited with this status.
    Code(u8),
    /// The container's command was killed by this signal.
    Signaled(i32),
    /// locker itself failed (125).
    Failure,
    /// The command exists but cannot be executed (126).
    CannotExecute,
    /// The command was not found (127).
    NotFound,
}

impl ExitStatus {
    pub(crate) const fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Code(c) => c,
            ExitStatus::Signaled(s) => 128u8.wrapping_add(s as u8),
            ExitStatus::Failure => 125,
            ExitStatus::CannotExecute => 126,
            ExitStatus::NotFound => 127,
        }
    }

    /// A process's end as waitpid reported it; None while it has not ended.
    pub(crate) fn from_wait(status: WaitStatus) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, c) => Some(ExitStatus::Code(c as u8)),
            WaitStatus::Signaled(_, s, _) => Some(ExitStatus::Signaled(s as i32)),
            _ => None,
        }
    }

    /// A raw wait status (from libc::waitpid in the child, where nix is not used).
    pub(crate) fn from_raw_wait(status: libc::c_int) -> Option<ExitStatus> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Code(libc::WEXITSTATUS(status) as u8))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn codes() {
        let pid = Pid::from_raw(1);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Exited(pid, 3)).map(ExitStatus::code),
            Some(3)
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(pid, Signal::SIGKILL, false))
                .map(ExitStatus::code),
            Some(137)
        );
        assert_eq!(ExitStatus::from_wait(WaitStatus::StillAlive), None);
        assert_eq!(ExitStatus::Failure.code(), 125);
        assert_eq!(ExitStatus::CannotExecute.code(), 126);
        assert_eq!(ExitStatus::NotFound.code(), 127);
        // A raw status: exit 7 is 7 << 8; killed by SIGTERM is 15.
        assert_eq!(ExitStatus::from_raw_wait(7 << 8), Some(ExitStatus::Code(7)));
        assert_eq!(
            ExitStatus::from_raw_wait(15),
            Some(ExitStatus::Signaled(15))
        );
    }
}
