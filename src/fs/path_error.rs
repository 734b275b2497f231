//! An io error on a named path: the one shape in which every module reports a failed
//! file operation ("create /var/lib/locker/tmp"), the errno kept as its source so the
//! CLI's one-line message and hint see it.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub(crate) struct PathError {
    pub(crate) action: &'static str,
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: io::Error,
}

/// For `.map_err(io_err("create", &dir))?` in any module whose error type converts
/// from `PathError`.
pub(crate) fn io_err<E: Into<io::Error>>(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(E) -> PathError {
    let path = path.to_path_buf();
    move |source| PathError {
        action,
        path,
        source: source.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_action_and_path_and_keeps_the_errno() {
        let e = io_err("create", Path::new("/x/y"))(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.to_string(), "create /x/y");
        let source = std::error::Error::source(&e).unwrap();
        let io = source.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.raw_os_error(), Some(libc::ENOSPC));
    }
}
