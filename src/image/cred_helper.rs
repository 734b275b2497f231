//! Docker's credential helper protocol (docker-credential-helpers): a program
//! `docker-credential-NAME` on PATH, named by `credsStore` (every registry) or
//! `credHelpers` (per registry) in config.json or auth.json. `get` reads the server
//! on stdin and answers `{"ServerURL":…,"Username":…,"Secret":…}`; `store` reads that
//! object. A helper that has nothing for the server says so on stdout
//! ("credentials not found in native keychain") and exits non-zero: no credentials,
//! not an error.
//!
//! Invariants: the helper is found on PATH by its name only (a name with `/` is
//! refused, so a config file cannot name an arbitrary program path); the secret never
//! appears in an error message (the helper's stdout is not shown on success paths).

use std::io::{self, Write};
use std::process::{Command, Stdio};

use super::registry::Credentials;

/// What the helpers print when they have no entry for the server.
const NOT_FOUND: &str = "credentials not found";

#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    #[error(
        "credential helper name {0:?} is not a plain name (config `credsStore`/`credHelpers`)"
    )]
    BadName(String),
    #[error("credential helper docker-credential-{helper} is not on PATH (named in the credentials file); install it or remove the entry")]
    Missing { helper: String },
    #[error("credential helper docker-credential-{helper} {action} for {server}: {reason}")]
    Failed {
        helper: String,
        action: &'static str,
        server: String,
        reason: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Answer {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// `docker-credential-HELPER get` for `server`; None when it has nothing for it.
pub(crate) fn get(helper: &str, server: &str) -> Result<Option<Credentials>, HelperError> {
    let out = call(helper, "get", server, server.as_bytes())?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        if said.contains(NOT_FOUND) || String::from_utf8_lossy(&out.stderr).contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(failed(helper, "get", server, &out));
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|e| HelperError::Failed {
        helper: helper.to_string(),
        action: "get",
        server: server.to_string(),
        reason: format!("its answer is not the helper JSON ({e})"),
    })?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        user: answer.username,
        password: answer.secret,
    }))
}

/// `docker-credential-HELPER store` of `c` for `server`.
pub(crate) fn store(helper: &str, server: &str, c: &Credentials) -> Result<(), HelperError> {
    let input = serde_json::to_vec(&Answer {
        server_url: server.to_string(),
        username: c.user.clone(),
        secret: c.password.clone(),
    })
    .expect("json");
    let out = call(helper, "store", server, &input)?;
    if !out.status.success() {
        return Err(failed(helper, "store", server, &out));
    }
    Ok(())
}

fn call(
    helper: &str,
    action: &'static str,
    server: &str,
    input: &[u8],
) -> Result<std::process::Output, HelperError> {
    if helper.is_empty() || helper.contains('/') || helper.starts_with('.') {
        return Err(HelperError::BadName(helper.to_string()));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HelperError::Missing {
                helper: helper.to_string(),
            },
            _ => HelperError::Failed {
                helper: helper.to_string(),
                action,
                server: server.to_string(),
                reason: e.to_string(),
            },
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A helper that exits without reading is answered by its status, not EPIPE.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().map_err(|e| HelperError::Failed {
        helper: helper.to_string(),
        action,
        server: server.to_string(),
        reason: e.to_string(),
    })
}

fn failed(
    helper: &str,
    action: &'static str,
    server: &str,
    out: &std::process::Output,
) -> HelperError {
    // stderr only: a misbehaving helper might print a secret on stdout.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = match stderr.trim() {
        "" => format!("exited with {}", out.status),
        s => format!(
            "exited with {}: {}",
            out.status,
            s.lines().next().unwrap_or(s)
        ),
    };
    HelperError::Failed {
        helper: helper.to_string(),
        action,
        server: server.to_string(),
        reason,
    }
}
