//! Host-side work in trees locker does not trust (image layers, build trees,
//! containers' upper layers): every path resolved inside its tree with openat2, the
//! `*at` calls on fds, and the one error type for a failed operation on a path.

pub(crate) mod at;
pub(crate) mod flatten;
pub(crate) mod openat2;
pub(crate) mod path_error;
pub(crate) mod tree;
