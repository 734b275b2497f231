//! `locker build` against the real Debian archive the host's apt sources name (the
//! mirror is configuration: read from /etc/apt, never written here). One real build
//! of bookworm minbase is shared by the asserting tests (a OnceLock); the package
//! cache lives in /var/cache/locker-tests/debs across runs, each store is private.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{lines_where, run_bounded, wait_child, Locker, Run};

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

/// The digest of root's build of bookworm (the rootless build must match it).
pub fn built_digest() -> String {
    built().digest.clone()
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

/// The same packages at the same versions, and the same tree file for file (type,
/// mode, owner, content or link target), as `mmdebstrap --variant=minbase` of the
/// same mirror with the same SOURCE_DATE_EPOCH: locker writes dpkg's database itself
/// instead of letting dpkg unpack every package again, and this proves the result is
/// what dpkg would have left.
#[test]
fn built_tree_matches_mmdebstrap() {
    let b = built();
    assert_same_tree_as_mmdebstrap(&b.locker, &b.digest, "bookworm");
}

/// Trixie (dpkg 1.22, base-files shipping the merged-/usr links itself, file
/// triggers): builds through its catalog entry, runs, and matches mmdebstrap too.
#[test]
fn trixie_builds_and_matches_mmdebstrap() {
    let locker = Locker::new();
    let r = build(&locker, &["build", "trixie"]);
    let digest = digest_of(&r);
    let r = run_in(
        &locker,
        &[
            "run",
            "--net",
            "none",
            "trixie",
            "sh",
            "-c",
            "dpkg --audit && apt-get --version | head -n 1",
        ],
    );
    assert!(r.stdout.starts_with("apt "), "{}", r.dump());
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "dpkg --audit found problems\n{}",
        r.dump()
    );
    assert_same_tree_as_mmdebstrap(&locker, &digest, "trixie");
}

/// mmdebstrap's side is cached per package set (name and version), so it runs again
/// only when the archive changed.
fn assert_same_tree_as_mmdebstrap(locker: &Locker, digest: &str, suite: &str) {
    let ours = locker.root().join("rootfs").join(digest);
    let our_packages = packages(&ours);
    let key = sha256_hex(our_packages.as_bytes());
    let cached = Path::new(CACHE).join(format!("mmdebstrap-{suite}-minbase-{}.txt", &key[..16]));
    if !cached.exists() {
        let mirror = host_mirror(suite)
            .or_else(|| host_mirror("bookworm"))
            .expect("the host's apt sources serve Debian");
        let tmp = tempfile::Builder::new()
            .prefix("locker-mmdebstrap-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let tree = tmp.path().join("tree");
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(["--variant=minbase", "--quiet", suite])
            .arg(&tree)
            .arg(&mirror)
            .env("SOURCE_DATE_EPOCH", EPOCH);
        let r = run_bounded(cmd, BUILD_LIMIT);
        assert_eq!(
            r.code,
            Some(0),
            "mmdebstrap is needed (tests/run.sh installs it)\n{}",
            r.dump()
        );
        std::fs::create_dir_all(CACHE).unwrap();
        let text = format!("{}{MANIFEST_MARK}{}", packages(&tree), manifest(&tree));
        let part = cached.with_extension("part");
        std::fs::write(&part, text).unwrap();
        std::fs::rename(&part, &cached).unwrap();
    }
    let theirs = std::fs::read_to_string(&cached).unwrap();
    let (their_packages, their_manifest) = theirs.split_once(MANIFEST_MARK).unwrap();
    assert_eq!(
        our_packages, their_packages,
        "{suite}: package sets differ (left: locker, right: mmdebstrap)"
    );
    let our_manifest = manifest(&ours);
    let (ours_only, theirs_only) = differences(&our_manifest, their_manifest);
    assert!(
        ours_only.is_empty() && theirs_only.is_empty(),
        "{suite}: trees differ\n--- only in locker's:\n{}\n--- only in mmdebstrap's:\n{}",
        ours_only.join("\n"),
        theirs_only.join("\n")
    );
}

const MANIFEST_MARK: &str = "--- manifest\n";

/// `name version` of each package in the tree's dpkg status, sorted.
fn packages(tree: &Path) -> String {
    let status = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap();
    let mut out: Vec<String> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim))
            };
            Some(format!("{} {}\n", field("Package:")?, field("Version:")?))
        })
        .collect();
    out.sort();
    out.concat()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Paths left out of the comparison, and why.
const NOT_COMPARED: &[&str] = &[
    // mmdebstrap creates device nodes; a locker container gets its /dev at run time.
    "dev/",
    // Copied from the build host by mmdebstrap; locker's runtime provides them.
    "etc/hostname",
    "etc/resolv.conf",
    // mmdebstrap's placeholder; a container mounts nothing from it.
    "etc/fstab",
    // locker's names the keyring it verified with.
    "etc/apt/sources.list",
    // Left by apt, which mmdebstrap runs for the non-essential packages.
    "var/cache/apt/archives/lock",
    "var/cache/apt/archives/partial",
    "var/lib/apt/lists/lock",
    "var/lib/apt/lists/partial",
];

/// One line per path: type, mode, owner and content digest or link target; backups
/// (`*-old`) left out (they record each tool's history, not the result); files that
/// are sets, in whatever order each tool wrote them, as their sorted lines (apt's
/// extended_states: the packages it marks automatic; dpkg's trigger interests).
fn manifest(tree: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut out = String::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(tree.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names.into_iter().rev() {
            let rel = rel.join(name);
            let shown = rel.to_string_lossy().into_owned();
            let skip = NOT_COMPARED.iter().any(|p| match p.strip_suffix('/') {
                Some(_) => shown.starts_with(p),
                None => shown == *p,
            }) || shown.ends_with("-old");
            if skip {
                continue;
            }
            let path = tree.join(&rel);
            let m = std::fs::symlink_metadata(&path).unwrap();
            let head = format!("{shown} {:o} {}:{}", m.mode(), m.uid(), m.gid());
            let t = m.file_type();
            let line = if t.is_dir() {
                stack.push(rel.clone());
                head
            } else if t.is_symlink() {
                format!("{head} -> {}", std::fs::read_link(&path).unwrap().display())
            } else if shown == "var/lib/apt/extended_states" {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut auto: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("Package: "))
                    .collect();
                auto.sort();
                format!("{head} auto {}", auto.join(","))
            } else if shown.starts_with("var/lib/dpkg/triggers/") {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort();
                format!("{head} lines {}", lines.join(","))
            } else {
                format!("{head} {}", sha256_hex(&std::fs::read(&path).unwrap()))
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Lines only in `a`, and lines only in `b`, each sorted.
fn differences(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let a: std::collections::BTreeSet<&str> = a.lines().collect();
    let b: std::collections::BTreeSet<&str> = b.lines().collect();
    (
        a.difference(&b).map(|s| s.to_string()).collect(),
        b.difference(&a).map(|s| s.to_string()).collect(),
    )
}

/// The one test whose default container reaches the machine's own network (the Debian
/// archive of the host's apt sources, through locker's bridge and NAT); what that
/// makes on the host (bridge, nftables table, ip_forward) is undone by the guard.
#[test]
fn built_image_installs_from_the_mirror_it_was_built_from() {
    let b = built();
    let _host = crate::harness::HostNetworkGuard::new();
    let mut cmd = b.locker.command(&[
        "run",
        "bookworm",
        "sh",
        "-c",
        "apt-get update -qq && apt-get install -y -qq hello >/dev/null && hello",
    ]);
    b.locker.on_host_network_for(&mut cmd);
    let r = run_bounded(cmd, Duration::from_secs(300));
    assert_eq!(r.code, Some(0), "{}", r.dump());
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

/// A keyring that does not exist is named before anything is fetched.
#[test]
fn missing_keyring_is_named_before_any_download() {
    let locker = Locker::new();
    let server = crate::server::Server::start();
    let mirror = server.serve("/ubuntu/dists/noble/InRelease", b"x".to_vec());
    let mirror = mirror.trim_end_matches("/dists/noble/InRelease");
    let keyring = locker.path("no-such-keyring.gpg");
    let r = locker.fails(&[
        "build",
        "noble",
        "--suite",
        "noble",
        "--mirror",
        mirror,
        "--keyring",
        keyring.to_str().unwrap(),
    ]);
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{}", r.dump());
    assert!(
        line.starts_with("locker: build noble: ")
            && line.contains(&keyring.display().to_string())
            && line.contains("not found"),
        "{}",
        r.dump()
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(locker.ok(&["images"]).lines().count(), 1, "only the header");
}

/// Interrupted in the build container (Ctrl-C's SIGINT, then a SIGKILL nothing can
/// catch): no image appears, no process of the build outlives it, and the next build
/// takes every package from the cache and leaves no work directory behind.
#[test]
fn interrupted_build_leaves_nothing_and_the_rerun_uses_the_cache() {
    let locker = Locker::new();
    let args = ["--verbose", "build", "cut", "--suite", "bookworm"];
    for signal in [Signal::SIGINT, Signal::SIGKILL] {
        let mut child = build_command(&locker, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // dpkg configuring, inside the container: the last and longest step.
        let configuring = lines_where(child.stderr.take().unwrap(), |l| {
            l.starts_with("Setting up ")
        });
        configuring
            .recv_timeout(BUILD_LIMIT)
            .expect("the build reaches dpkg --configure");
        let pid1 = locker.container_pid1();
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = wait_child(&mut child, Duration::from_secs(60));
        assert!(!status.success(), "{signal}: {status:?}");
        assert_eq!(
            locker.ok(&["images"]).lines().count(),
            1,
            "{signal}: only the header"
        );
        let rootfs: Vec<_> = std::fs::read_dir(locker.root().join("rootfs"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(rootfs.is_empty(), "{signal}: {rootfs:?}");
        // PID 1 of the build container dies with locker (PR_SET_PDEATHSIG), and the
        // kernel kills the rest of its PID namespace with it; both are asynchronous,
        // hence the bounded wait.
        let alive = || Path::new(&format!("/proc/{pid1}")).exists();
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !alive(),
            "{signal}: the build container's PID 1 outlived locker"
        );
    }
    let r = build(&locker, &args[..]);
    assert!(
        r.stderr.contains("downloaded 0 packages"),
        "the rerun fetched again\n{}",
        r.dump()
    );
    assert!(locker.ok(&["images"]).contains("cut"));
    locker.ok(&["gc"]);
    let work: Vec<_> = std::fs::read_dir(locker.root().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("work-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(work.is_empty(), "gc left {work:?}");
}
