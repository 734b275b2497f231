//! `locker run` on a real Debian root filesystem: bookworm minbase (+ procps for `ps`),
//! made once per machine with mmdebstrap from the host's apt sources and cached in
//! /var/cache/locker-tests, then imported into each test's private store.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::Locker;
use crate::run::{tree_hash, Ctx};

const CACHE: &str = "/var/cache/locker-tests";

/// The host's apt sources files: the archive is configuration, never a literal here.
fn host_sources() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sources"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let list = Path::new("/etc/apt/sources.list");
    if list.metadata().is_ok_and(|m| m.len() > 0) {
        files.push(list.to_path_buf());
    }
    assert!(
        !files.is_empty(),
        "no apt sources on this host (/etc/apt/sources.list[.d])"
    );
    files
}

/// bookworm minbase + procps as an uncompressed tar, built once per machine.
fn debian_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = Path::new(CACHE).join("bookworm-minbase-procps.tar");
        if !tar.exists() {
            std::fs::create_dir_all(CACHE).unwrap();
            let tmp = tar.with_extension(format!("tmp.{}.tar", std::process::id()));
            let out = Command::new("mmdebstrap")
                .args([
                    "--quiet",
                    "--variant=minbase",
                    "--include=procps",
                    "bookworm",
                ])
                .arg(&tmp)
                .args(host_sources())
                .output()
                .expect("mmdebstrap (bash tests/run.sh installs it)");
            assert!(
                out.status.success(),
                "mmdebstrap failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&tmp, &tar).unwrap();
        }
        tar
    })
}

/// Imports the Debian tarball as `name` through the real `locker import`.
fn install_debian(l: &Locker, name: &str) -> PathBuf {
    l.ok(&["import", debian_tar().to_str().unwrap(), "--name", name]);
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.root().join("refs.json")).unwrap()).unwrap();
    let digest = refs["images"][name]["digest"].as_str().unwrap().to_string();
    l.root().join("rootfs").join(digest)
}

fn debian() -> Ctx {
    Ctx::with_image("bookworm", install_debian)
}

#[test]
fn ps_aux_shows_only_the_container() {
    let c = debian();
    let out = c.ok(&[], &["ps", "aux"]);
    let lines: Vec<&str> = out.lines().collect();
    // Header, the container's PID 1 and ps itself: nothing of the host.
    assert_eq!(lines.len(), 3, "ps aux:\n{out}");
    assert!(
        lines[1].split_whitespace().nth(1) == Some("1"),
        "PID 1 first:\n{out}"
    );
    assert!(lines[2].contains("ps aux"), "{out}");
}

#[test]
fn bash_feels_like_a_debian_machine() {
    let c = debian();
    let out = c.ok(
        &[],
        &["bash", "-c", "cat /etc/debian_version; id -un; echo $HOME; hostname; apt-get --version | head -1; echo $container"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("12."), "{out}");
    assert_eq!(&lines[1..4], ["root", "/root", "bookworm"], "{out}");
    assert!(lines[4].starts_with("apt "), "{out}");
    assert_eq!(lines[5], "locker", "{out}");
}

#[test]
fn default_command_is_bash_and_stdin_pipes_through() {
    let c = debian();
    let mut cmd = c.l.command(&c.args(&["-i"], &[]));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo shell=$BASH_VERSION; exit 3\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("shell=5."),
        "{:?}",
        out
    );
}

#[test]
fn destructive_commands_leave_the_image_untouched() {
    let c = debian();
    let before = tree_hash(&c.rootfs);
    c.ok(&[], &["bash", "-c", "rm -rf /usr/share/doc /etc/apt && dpkg --purge --force-all procps >/dev/null 2>&1; test ! -e /etc/apt"]);
    // The next container sees the image as it was.
    c.ok(
        &[],
        &[
            "bash",
            "-c",
            "test -d /etc/apt && test -d /usr/share/doc && command -v ps",
        ],
    );
    assert_eq!(tree_hash(&c.rootfs), before, "the store's tree changed");
}

#[test]
fn users_from_the_images_passwd() {
    let c = debian();
    assert_eq!(c.ok(&["-u", "nobody"], &["id", "-u"]).trim(), "65534");
    assert_eq!(
        c.ok(&["-u", "daemon:daemon"], &["id", "-un"]).trim(),
        "daemon"
    );
    let r = c.code(&["--read-only"], &["touch", "/x"], 1);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.dump());
}

#[test]
fn dpkg_database_is_consistent() {
    let c = debian();
    assert_eq!(c.ok(&[], &["dpkg", "--audit"]), "");
    let pkgs = c.ok(&[], &["dpkg-query", "-W", "-f", "${Package}\\n"]);
    for p in ["apt", "bash", "dpkg", "procps"] {
        assert!(pkgs.lines().any(|l| l == p), "{p} missing from:\n{pkgs}");
    }
}
