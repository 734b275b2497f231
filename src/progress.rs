//! Output policy: -q / -v / TTY, and the indicatif implementation of `fetch::Reporter`.
//! (Being written: see the fetch helper's brief.)
