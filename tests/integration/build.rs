//! `locker build` against the real Debian archive the host's apt sources name (the
//! mirror is configuration: read from /etc/apt, never written here). One real build
//! of bookworm minbase is shared by the asserting tests (a OnceLock); the package
//! cache lives in /var/cache/locker-tests/debs across runs, each store is private.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{run_bounded, Locker, Run};

/// Shared across test runs on one machine: verified .debs, keyed by sha256.
const CACHE: &str = "/var/cache/locker-tests";
/// Fixed, so two builds of the same packages must give the same digest.
const EPOCH: &str = "1700000000";
const BUILD_LIMIT: Duration = Duration::from_secs(900);

struct Built {
    locker: Locker,
    digest: String,
    stderr: String,
}

fn deb_cache() -> PathBuf {
    Path::new(CACHE).join("debs")
}

fn build_command(locker: &Locker, args: &[&str]) -> Command {
    let mut cmd = locker.command(args);
    cmd.env("LOCKER_DEB_CACHE", deb_cache())
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

/// `locker build` of `name`; panics with the dump unless it succeeds.
fn build(locker: &Locker, args: &[&str]) -> Run {
    let r = run_bounded(build_command(locker, args), BUILD_LIMIT);
    assert_eq!(r.code, Some(0), "build failed\n{}", r.dump());
    r
}

fn digest_of(r: &Run) -> String {
    r.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sha256:"))
        .unwrap_or_else(|| panic!("no digest printed\n{}", r.dump()))
        .to_string()
}

/// The shared store outlives every test (a static is never dropped): removed when the
/// test process exits.
static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_shared_dir() {
    if let Some(dir) = SHARED_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The one real build: bookworm minbase through the catalog entry.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let locker = Locker::new();
        SHARED_DIR.get_or_init(|| locker.dir.path().to_path_buf());
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_shared_dir) };
        let r = build(&locker, &["--verbose", "build", "bookworm"]);
        Built {
            digest: digest_of(&r),
            stderr: r.stderr,
            locker,
        }
    })
}

fn run_in(locker: &Locker, args: &[&str]) -> Run {
    let r = run_bounded(locker.command(args), Duration::from_secs(300));
    assert_eq!(r.code, Some(0), "{}", r.dump());
    r
}

/// The first binary (`deb`) source for `suite` in the host's apt configuration.
fn host_mirror(suite: &str) -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "list" || ext == "sources" {
                texts.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    for text in texts {
        for para in text.split("\n\n") {
            let field = |name: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(types), Some(uris), Some(suites)) =
                (field("Types:"), field("URIs:"), field("Suites:"))
            {
                if types.split_whitespace().any(|t| t == "deb")
                    && suites.split_whitespace().any(|s| s == suite)
                {
                    return uris.split_whitespace().next().map(str::to_string);
                }
            }
            for line in para.lines() {
                let mut words = line.split_whitespace().peekable();
                if words.next() != Some("deb") {
                    continue;
                }
                if words.peek().is_some_and(|w| w.starts_with('[')) {
                    for w in words.by_ref() {
                        if w.ends_with(']') {
                            break;
                        }
                    }
                }
                if let (Some(uri), Some(s)) = (words.next(), words.next()) {
                    if s == suite {
                        return Some(uri.to_string());
                    }
                }
            }
        }
    }
    None
}

#[test]
fn built_image_runs_apt_and_dpkg_is_clean() {
    let b = built();
    let r = run_in(
        &b.locker,
        &["run", "--net", "none", "bookworm", "apt-get", "--version"],
    );
    assert!(r.stdout.starts_with("apt "), "{}", r.dump());
    let r = run_in(
        &b.locker,
        &["run", "--net", "none", "bookworm", "dpkg", "--audit"],
    );
    assert_eq!(
        r.stdout.trim(),
        "",
        "dpkg --audit found problems\n{}",
        r.dump()
    );
    let images = b.locker.ok(&["images"]);
    assert!(images.contains("debian-12"), "{images}");
    assert!(b.stderr.contains("timings: indices"), "{}", b.stderr);
    let r = run_in(
        &b.locker,
        &[
            "run",
            "--net",
            "none",
            "bookworm",
            "cat",
            "/etc/apt/sources.list",
        ],
    );
    assert!(r.stdout.contains(" bookworm main"), "{}", r.dump());
}

/// The same package set as `mmdebstrap --variant=minbase` of the same mirror.
#[test]
fn built_package_set_matches_mmdebstrap() {
    let b = built();
    let r = run_in(
        &b.locker,
        &[
            "run",
            "--net",
            "none",
            "bookworm",
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\\n",
        ],
    );
    let mut ours: Vec<&str> = r.stdout.lines().collect();
    ours.sort();

    let mirror = host_mirror("bookworm").expect("the host's apt sources serve bookworm");
    // Cached for a week: the minbase set of a stable release hardly ever changes, and
    // mmdebstrap takes half a minute.
    let list = Path::new(CACHE).join("mmdebstrap-bookworm-minbase.list");
    let fresh = std::fs::metadata(&list)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(7 * 86400));
    if !fresh {
        std::fs::create_dir_all(CACHE).unwrap();
        let tmp = list.with_extension("tmp");
        let hook = format!(
            "chroot \"$1\" dpkg-query -W -f '${{Package}}\\n' | sort > {}",
            tmp.display()
        );
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(["--variant=minbase", "--quiet"])
            .arg(format!("--customize-hook={hook}"))
            .args(["bookworm", "/dev/null", &mirror]);
        let r = run_bounded(cmd, BUILD_LIMIT);
        assert_eq!(
            r.code,
            Some(0),
            "mmdebstrap is needed (tests/run.sh installs it)\n{}",
            r.dump()
        );
        std::fs::rename(&tmp, &list).unwrap();
    }
    let theirs = std::fs::read_to_string(&list).unwrap();
    let mut theirs: Vec<&str> = theirs.lines().collect();
    theirs.sort();
    assert_eq!(
        ours, theirs,
        "package sets differ (left: locker, right: mmdebstrap)"
    );
}

#[test]
fn built_image_installs_from_the_mirror_it_was_built_from() {
    let b = built();
    let r = run_in(
        &b.locker,
        &[
            "run",
            "--net",
            "host",
            "bookworm",
            "sh",
            "-c",
            "apt-get update -qq && apt-get install -y -qq hello >/dev/null && hello",
        ],
    );
    assert!(r.stdout.contains("Hello, world!"), "{}", r.dump());
}

/// A second build with a warm cache downloads nothing and, with SOURCE_DATE_EPOCH,
/// gives the same digest.
#[test]
fn rebuild_uses_the_cache_and_is_reproducible() {
    let b = built();
    let r = build(
        &b.locker,
        &[
            "--verbose",
            "build",
            "again",
            "--suite",
            "bookworm",
            "--variant",
            "minbase",
        ],
    );
    assert!(
        r.stderr.contains("downloaded 0 packages"),
        "the warm cache was not used\n{}",
        r.dump()
    );
    assert_eq!(digest_of(&r), b.digest, "two builds differ\n{}", r.dump());
}

/// A keyring that did not sign the archive: a one-line error, nothing in the store.
#[test]
fn wrong_keyring_installs_nothing() {
    let locker = Locker::new();
    let home = locker.path("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg is needed (tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "not the archive <x@example.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let keyring = locker.path("wrong.gpg");
    std::fs::write(&keyring, gpg(&["--export"])).unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .status();

    let r = run_bounded(
        build_command(
            &locker,
            &[
                "build",
                "x",
                "--suite",
                "bookworm",
                "--keyring",
                keyring.to_str().unwrap(),
            ],
        ),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(125), "{}", r.dump());
    let last = r.stderr.trim().lines().last().unwrap_or("");
    assert!(
        last.starts_with("locker: build x: verify ") && last.contains("InRelease"),
        "{}",
        r.dump()
    );
    assert!(last.contains("nothing was installed"), "{}", r.dump());
    assert_eq!(locker.ok(&["images"]).lines().count(), 1, "only the header");
    let leftovers: Vec<_> = std::fs::read_dir(locker.root().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("work-")),
        "{leftovers:?}"
    );
}
