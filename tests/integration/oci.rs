//! OCI images: `locker pull REF` from a real registry (Debian's docker-registry on
//! 127.0.0.1), images made by umoci and copied in by skopeo (OCI and Docker schema 2,
//! gzip and zstd), layers shared in the store, the image config driving `run`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{fixture_tar, names_in, run_bounded, Locker, Run};
use crate::registry::{CutProxy, HandImage, Layout, Registry};
use crate::server::{Behaviour, Server};

fn expect_ok(r: &Run) {
    assert_eq!(r.code, Some(0), "expected success\n{}", r.dump());
}

fn expect_fail(r: &Run) {
    assert_eq!(r.code, Some(125), "expected exit 125\n{}", r.dump());
    let last = r.stderr.lines().rfind(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.starts_with("locker: ")),
        "one `locker: ` error line\n{}",
        r.dump()
    );
}

fn layers(l: &Locker) -> Vec<String> {
    names_in(&l.root().join("layers"))
}

fn work_dirs(l: &Locker) -> Vec<String> {
    names_in(&l.root().join("tmp"))
        .into_iter()
        .filter(|n| n.starts_with("work-") && !n.ends_with(".lock"))
        .collect()
}

fn images_json(l: &Locker) -> Vec<Value> {
    let v: Value = serde_json::from_str(&l.ok(&["images", "--json"])).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

fn assert_nothing_stored(l: &Locker, r: &Run) {
    assert!(
        layers(l).is_empty(),
        "no layer may be stored: {:?}\n{}",
        layers(l),
        r.dump()
    );
    assert!(
        images_json(l).is_empty(),
        "no image may be named\n{}",
        r.dump()
    );
    assert!(
        work_dirs(l).is_empty(),
        "no work dir left: {:?}\n{}",
        work_dirs(l),
        r.dump()
    );
}

/// A tar of `entries`: (path, kind, data) with kind `f` file, `d` dir, `h` hard link
/// (data = target), `s` symlink (data = target).
fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            'f' => {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
            'x' => {
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
            'h' => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_link(&mut h, path, data).unwrap();
            }
            's' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, path, data).unwrap();
            }
            other => panic!("kind {other}"),
        }
    }
    b.into_inner().unwrap()
}

struct Fixture {
    l: Locker,
    layout: Layout,
    reg: Registry,
}

fn write(l: &Locker, name: &str, data: &[u8]) -> PathBuf {
    let p = l.path(name);
    fs::write(&p, data).unwrap();
    p
}

/// The busybox base layer plus a layer with /srv, and a config for `run`.
fn fixture() -> Fixture {
    let l = Locker::new();
    let layout = Layout::init(&l.path("layout"));
    let base = write(&l, "base.tar", fixture_tar());
    layout.new_from_tar("app", &base);
    let app = write(
        &l,
        "app.tar",
        &tar_of(&[
            ("srv", 'd', ""),
            ("srv/app", 'd', ""),
            ("srv/app/hello.txt", 'f', "hello from the app layer\n"),
        ]),
    );
    layout.add_layer("app", &app);
    layout.config(
        "app",
        &[
            "--config.entrypoint",
            "/bin/echo",
            "--config.entrypoint",
            "ep",
            "--config.cmd",
            "default-cmd",
            "--config.env",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.env",
            "FROM_IMAGE=yes",
            "--config.workingdir",
            "/srv/app",
            "--config.user",
            "1000",
            "--config.stopsignal",
            "SIGQUIT",
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ],
    );
    let reg = Registry::start(&l.path("registry"));
    Fixture { l, layout, reg }
}

fn pull(l: &Locker, reference: &str) -> Run {
    l.run(&["--verbose", "pull", reference])
}

fn manifest_digest(reg: &Registry, reference: &str) -> String {
    let r = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ]);
    r.stdout.trim().to_string()
}

#[test]
fn oci_pull_by_tag_and_digest_and_run_with_its_config() {
    let f = fixture();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/app:v1", &[]);
    let reference = f.reg.reference("team/app:v1");
    let r = pull(&f.l, &reference);
    expect_ok(&r);
    let imgs = images_json(&f.l);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    assert_eq!(imgs[0]["name"], reference.as_str());
    let digest = manifest_digest(&f.reg, &reference);
    assert_eq!(
        imgs[0]["digest"],
        digest.as_str(),
        "the image is named by its manifest digest"
    );
    assert_eq!(imgs[0]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(layers(&f.l).len(), 2);
    let human = f.l.ok(&["images"]);
    assert!(human.contains(&reference), "{human}");

    // Entrypoint + Cmd, then Entrypoint + args (Docker's rules).
    let out = f.l.ok(&["run", &reference]);
    assert_eq!(out.trim(), "ep default-cmd");
    let out = f.l.ok(&["run", &reference, "a", "b"]);
    assert_eq!(out.trim(), "ep a b");
    // --entrypoint drops Cmd; Env, WorkingDir and User come from the config.
    let out = f.l.ok(&[
        "run",
        "--entrypoint",
        "/bin/sh",
        &reference,
        "-c",
        "echo $FROM_IMAGE; pwd; id -u; cat hello.txt",
    ]);
    assert_eq!(out, "yes\n/srv/app\n1000\nhello from the app layer\n");
    // Flags still win.
    let out = f.l.ok(&[
        "run",
        "--entrypoint",
        "/bin/sh",
        "-e",
        "FROM_IMAGE=flag",
        "-w",
        "/",
        "-u",
        "0",
        &reference,
        "-c",
        "echo $FROM_IMAGE; pwd; id -u",
    ]);
    assert_eq!(out, "flag\n/\n0\n");

    // By digest: the same manifest, nothing new stored, a second name.
    let by_digest = format!("{}@{digest}", f.reg.reference("team/app"));
    let before = layers(&f.l);
    expect_ok(&pull(&f.l, &by_digest));
    assert_eq!(
        layers(&f.l),
        before,
        "a digest pull of the same image reuses its layers"
    );
    assert_eq!(images_json(&f.l).len(), 2);
    let out = f.l.ok(&["run", &by_digest, "x"]);
    assert_eq!(out.trim(), "ep x");
    // Pulling again is a no-op.
    let again = pull(&f.l, &reference);
    expect_ok(&again);
    assert!(again.stderr.contains("already present"), "{}", again.dump());
}

#[test]
fn oci_docker_schema2_multi_layer_whiteouts_opaque_and_lower_hardlink() {
    let f = fixture();
    let top = write(
        &f.l,
        "top.tar",
        &tar_of(&[
            // A whiteout for a file of the base layer.
            ("etc/.wh.os-release", 'f', ""),
            // An opaque /home: tester's home from the base is hidden, new-home is kept.
            ("home", 'd', ""),
            ("home/.wh..wh..opq", 'f', ""),
            ("home/new-home", 'd', ""),
            // A hard link to a file only the base layer has.
            ("usr/bin/bb-link", 'h', "bin/busybox"),
        ]),
    );
    f.layout.add_layer("app", &top);
    f.reg.skopeo_push(
        &f.layout.skopeo_src("app"),
        "team/layered:v2s2",
        &["--format", "v2s2"],
    );
    let raw = f.reg.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", f.reg.reference("team/layered:v2s2")),
    ]);
    assert!(
        raw.stdout
            .contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{}",
        raw.stdout
    );
    let reference = f.reg.reference("team/layered:v2s2");
    expect_ok(&pull(&f.l, &reference));
    assert_eq!(layers(&f.l).len(), 3);
    let out = f.l.ok(&[
        "run", "--entrypoint", "/bin/sh", "-u", "0", "-w", "/", &reference, "-c",
        "test -e /etc/os-release && echo os-release-visible; ls /home; cmp /usr/bin/bb-link /bin/busybox && echo same; test -x /usr/bin/bb-link && echo executable",
    ]);
    assert_eq!(out, "new-home\nsame\nexecutable\n");
}

/// Rootless: the same whiteouts and opaque directory, unpacked inside an ordinary
/// user's user namespace (user.overlay.* marks, overlayfs mounted with userxattr).
#[test]
fn oci_rootless_pull_keeps_whiteouts_and_opaque_dirs() {
    let f = fixture();
    let top = write(
        &f.l,
        "top.tar",
        &tar_of(&[
            ("etc/.wh.os-release", 'f', ""),
            ("home", 'd', ""),
            ("home/.wh..wh..opq", 'f', ""),
            ("home/new-home", 'd', ""),
        ]),
    );
    f.layout.add_layer("app", &top);
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/rootless:1", &[]);
    let reference = f.reg.reference("team/rootless:1");
    let user = crate::rootless::Ctx::new(&crate::rootless::users().ranged, Some("oci"));
    let r = user.run(&["pull", &reference]);
    assert_eq!(r.code, Some(0), "{}", r.dump());
    let out = user.ok(&[
        "run", "--net", "none", "--entrypoint", "/bin/sh", "-u", "0", "-w", "/", &reference, "-c",
        "test -e /etc/os-release && echo os-release-visible; ls /home; rm -r /home/new-home && mkdir /home/new-home && echo rewritten",
    ]);
    assert_eq!(out, "new-home\nrewritten\n");
}

#[test]
fn oci_zstd_layers() {
    let f = fixture();
    f.reg.skopeo_push(
        &f.layout.skopeo_src("app"),
        "team/zstd:v1",
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );
    let raw = f.reg.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", f.reg.reference("team/zstd:v1")),
    ]);
    assert!(
        raw.stdout.contains("tar+zstd"),
        "skopeo wrote zstd layers: {}",
        raw.stdout
    );
    let reference = f.reg.reference("team/zstd:v1");
    expect_ok(&pull(&f.l, &reference));
    assert_eq!(f.l.ok(&["run", &reference, "z"]).trim(), "ep z");
}

#[test]
fn oci_images_sharing_a_base_store_it_once_and_rmi_counts_references() {
    let f = fixture();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/one:v1", &[]);
    // A second image on the same base with another top layer.
    let other = write(&f.l, "other.tar", &tar_of(&[("other.txt", 'f', "other\n")]));
    f.layout.umoci(&["new", "--image", &f.layout.image("two")]);
    f.layout.add_layer("two", &f.l.path("base.tar"));
    f.layout.add_layer("two", &other);
    f.reg
        .skopeo_push(&f.layout.skopeo_src("two"), "team/two:v1", &[]);

    let one = f.reg.reference("team/one:v1");
    let two = f.reg.reference("team/two:v1");
    expect_ok(&pull(&f.l, &one));
    assert_eq!(layers(&f.l).len(), 2);
    let r = pull(&f.l, &two);
    expect_ok(&r);
    assert!(
        r.stderr.contains("1 to fetch"),
        "only the new layer is fetched\n{}",
        r.dump()
    );
    assert_eq!(layers(&f.l).len(), 3, "the shared base is stored once");
    assert_eq!(f.l.ok(&["run", &two, "/bin/cat", "/other.txt"]), "other\n");

    let base: String = images_json(&f.l)[0]["layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .into();
    f.l.ok(&["rmi", &one]);
    let left = layers(&f.l);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&base), "the base stays while `two` uses it");
    f.l.ok(&["rmi", &two]);
    assert!(layers(&f.l).is_empty(), "the last name frees its layers");
    f.l.ok(&["gc"]);
}

#[test]
fn oci_corrupt_blob_or_manifest_is_refused_and_nothing_stored() {
    let f = fixture();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/bad:v1", &[]);
    let reference = f.reg.reference("team/bad:v1");
    let raw = f.reg.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let manifest: Value = serde_json::from_str(&raw.stdout).unwrap();
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();

    // A layer blob changed on the registry's disk.
    let path = f.reg.blob_path(&layer);
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    let r = pull(&f.l, &reference);
    expect_fail(&r);
    assert!(
        r.stderr.contains(&layer[..12]) || r.stderr.contains("digest"),
        "names the blob\n{}",
        r.dump()
    );
    // The other (good) layer was unpacked too, but nothing may be published.
    assert_nothing_stored(&f.l, &r);
    fs::write(&path, &good).unwrap();

    // The manifest itself changed on disk: it no longer hashes to its digest.
    let mdigest = manifest_digest(&f.reg, &reference);
    let mpath = f.reg.blob_path(mdigest.trim_start_matches("sha256:"));
    let text = fs::read_to_string(&mpath).unwrap();
    fs::write(&mpath, format!("{text}\n")).unwrap();
    let r = pull(&f.l, &reference);
    expect_fail(&r);
    assert!(
        r.stderr.contains("manifest"),
        "names the manifest\n{}",
        r.dump()
    );
    assert_nothing_stored(&f.l, &r);
    fs::write(&mpath, text).unwrap();
    expect_ok(&pull(&f.l, &reference));
}

/// An index in the layout pointing at two platform manifests, copied with `--all`.
#[test]
fn oci_multi_arch_index_picks_the_platform() {
    let f = fixture();
    f.layout.config(
        "app",
        &["--tag", "arm", "--architecture", "arm64", "--os", "linux"],
    );
    let index: Value =
        serde_json::from_slice(&fs::read(f.layout.dir.join("index.json")).unwrap()).unwrap();
    let find = |tag: &str| -> Value {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .cloned()
            .unwrap()
    };
    let entry = |m: Value, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m["digest"], "size": m["size"],
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(find("arm"), "arm64"), entry(find("app"), "amd64")]
    });
    let bytes = serde_json::to_vec(&multi).unwrap();
    let hex = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    fs::write(f.layout.dir.join("blobs/sha256").join(&hex), &bytes).unwrap();
    let mut index = index.clone();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"), "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    fs::write(
        f.layout.dir.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("multi"), "team/multi:v1", &["--all"]);

    let reference = f.reg.reference("team/multi:v1");
    expect_ok(&pull(&f.l, &reference));
    let img = &images_json(&f.l)[0];
    let amd = find("app")["digest"].as_str().unwrap().to_string();
    assert_eq!(
        img["digest"],
        amd.as_str(),
        "the host's platform (amd64) was chosen"
    );
    assert_eq!(f.l.ok(&["run", &reference, "m"]).trim(), "ep m");

    let l2 = Locker::new();
    expect_ok(&l2.run(&["pull", "--platform", "linux/arm64", &reference]));
    let arm = find("arm")["digest"].as_str().unwrap().to_string();
    assert_eq!(images_json(&l2)[0]["digest"], arm.as_str());

    let l3 = Locker::new();
    let r = l3.run(&["pull", "--platform", "linux/s390x", &reference]);
    expect_fail(&r);
    assert!(
        r.stderr.contains("linux/arm64") && r.stderr.contains("linux/amd64"),
        "lists what there is\n{}",
        r.dump()
    );
    assert_nothing_stored(&l3, &r);
}

#[test]
fn oci_basic_auth_needs_login_then_pulls() {
    let l = Locker::new();
    let layout = Layout::init(&l.path("layout"));
    let base = write(&l, "base.tar", fixture_tar());
    layout.new_from_tar("app", &base);
    let reg = Registry::start_with(&l.path("registry"), Some(("tester", "s3cret")));
    reg.skopeo_push(&layout.skopeo_src("app"), "private/app:v1", &[]);
    let reference = reg.reference("private/app:v1");
    let xdg = l.path("xdg");
    fs::create_dir_all(&xdg).unwrap();
    let with_env = |args: &[&str], stdin: Option<&str>| -> Run {
        let mut cmd = l.command(args);
        cmd.env("XDG_RUNTIME_DIR", &xdg);
        match stdin {
            Some(text) => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                Run {
                    cmd: format!("{args:?}"),
                    code: out.status.code(),
                    stdout: String::from_utf8_lossy(&out.stdout).into(),
                    stderr: String::from_utf8_lossy(&out.stderr).into(),
                }
            }
            None => run_bounded(cmd, Duration::from_secs(120)),
        }
    };
    let r = with_env(&["pull", &reference], None);
    expect_fail(&r);
    assert!(
        r.stderr.contains("locker login"),
        "says to log in\n{}",
        r.dump()
    );
    assert_nothing_stored(&l, &r);

    let r = with_env(
        &["login", &reg.host(), "-u", "tester", "--password-stdin"],
        Some("wrong\n"),
    );
    expect_fail(&r);
    assert!(
        !xdg.join("containers/auth.json").exists(),
        "bad credentials are not stored"
    );
    let r = with_env(
        &["login", &reg.host(), "-u", "tester", "--password-stdin"],
        Some("s3cret\n"),
    );
    expect_ok(&r);
    let auth = xdg.join("containers/auth.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&auth).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "credentials are private");
    expect_ok(&with_env(&["pull", &reference], None));
    assert_eq!(layers(&l).len(), 1);

    // Docker's config.json is read too.
    let l2 = Locker::new();
    let docker = l2.path("home/.docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(docker.join("config.json"), fs::read(&auth).unwrap()).unwrap();
    let mut cmd = l2.command(&["pull", &reference]);
    cmd.env_remove("XDG_RUNTIME_DIR");
    expect_ok(&run_bounded(cmd, Duration::from_secs(120)));
}

/// A registry stand-in on the harness's HTTP server (Range support, throttling): the
/// layer blob trickles, `locker pull` is killed with SIGKILL mid-blob, and the next
/// pull resumes the partial download with a Range request.
#[test]
fn oci_kill_mid_pull_then_pull_resumes() {
    let l = Locker::new();
    let layout = Layout::init(&l.path("layout"));
    // Incompressible data, so the blob is big enough to be caught mid-way.
    let mut noise = vec![0u8; 6 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "noise.bin", &noise[..]).unwrap();
    let tar = write(&l, "noise.tar", &b.into_inner().unwrap());
    layout.new_from_tar("big", &tar);
    let index: Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).unwrap()).unwrap();
    let mhex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = |hex: &str| fs::read(layout.dir.join("blobs/sha256").join(hex)).unwrap();
    let manifest: Value = serde_json::from_slice(&blob(&mhex)).unwrap();
    let chex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let lhex = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();

    let server = Server::start();
    server.serve("/v2/r/big/manifests/v1", blob(&mhex));
    server.serve(&format!("/v2/r/big/blobs/sha256:{chex}"), blob(&chex));
    let layer_path = format!("/v2/r/big/blobs/sha256:{lhex}");
    server.serve_with(
        &layer_path,
        blob(&lhex),
        Behaviour {
            chunk: 64 << 10,
            delay: Some(Duration::from_millis(20)),
            ..Behaviour::default()
        },
    );
    let reference = format!("127.0.0.1:{}/r/big:v1", server.port());
    let mut cmd = l.command(&["pull", &reference]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let downloads = l.root().join("tmp/downloads");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial: u64 = fs::read_dir(&downloads)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if partial > 512 << 10 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(images_json(&l).is_empty(), "a killed pull names nothing");
    assert!(layers(&l).is_empty(), "a killed pull publishes no layer");

    server.configure(&layer_path, |b| b.delay = None);
    let r = l.run(&["pull", &reference]);
    expect_ok(&r);
    let gets = server.requests_for(&layer_path);
    let resumed = gets.iter().rfind(|g| g.method == "GET").unwrap();
    assert!(
        resumed
            .range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-")),
        "the second pull resumes with Range: {gets:?}"
    );
    assert_eq!(layers(&l).len(), 1);
    // What the killed pull left behind (its work dir) is gone after gc.
    l.ok(&["gc"]);
    assert!(work_dirs(&l).is_empty(), "{:?}", work_dirs(&l));
}

/// A root tarball imported into the store, as `locker build` would leave an image.
fn imported(l: &Locker, name: &str) {
    let tar = write(l, "rootfs.tar", fixture_tar());
    l.ok(&["import", tar.to_str().unwrap(), "--name", name]);
}

#[test]
fn oci_export_layout_is_reproducible_and_read_by_skopeo_and_umoci() {
    let l = Locker::new();
    imported(&l, "fx");
    let export = |out: &Path| {
        let mut cmd = l.command(&[
            "export",
            "fx",
            "--format",
            "oci",
            "-o",
            out.to_str().unwrap(),
        ]);
        cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        expect_ok(&run_bounded(cmd, Duration::from_secs(120)));
    };
    let (a, b) = (l.path("a.tar"), l.path("b.tar"));
    export(&a);
    export(&b);
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "two exports are byte-identical"
    );
    let dir = l.path("layout-dir");
    export(&dir);
    assert!(dir.join("oci-layout").is_file() && dir.join("index.json").is_file());
    let reg = Registry::start(&l.path("registry"));
    let inspect = reg.skopeo(&["inspect", &format!("oci:{}:fx", dir.display())]);
    let v: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        v["Layers"].as_array().unwrap().len(),
        1,
        "{}",
        inspect.stdout
    );
    // umoci unpacks it to the same busybox.
    let bundle = l.path("bundle");
    let layout = Layout { dir: dir.clone() };
    layout.umoci(&[
        "unpack",
        "--image",
        &layout.image("fx"),
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read(bundle.join("rootfs/bin/busybox")).unwrap(),
        fs::read(crate::harness::busybox_path()).unwrap()
    );
    // And the archive form goes to a registry.
    reg.skopeo_push(
        &format!("oci-archive:{}:fx", a.display()),
        "out/fx:archive",
        &[],
    );
    // An existing directory is not overwritten.
    let r = l.run(&[
        "export",
        "fx",
        "--format",
        "oci",
        "-o",
        dir.to_str().unwrap(),
    ]);
    expect_fail(&r);
}

#[test]
fn oci_push_of_a_store_image_then_skopeo_inspect_copy_and_pull_back() {
    let l = Locker::new();
    imported(&l, "fx");
    let reg = Registry::start(&l.path("registry"));
    let reference = reg.reference("pushed/fx:v1");
    let out = l.ok(&["push", "fx", &reference]);
    assert!(out.contains("sha256:"), "{out}");
    let inspect = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let v: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(v["Os"], "linux");
    let cfg = reg.skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert!(
        cfg.stdout.contains("/bin/sh"),
        "default Cmd: {}",
        cfg.stdout
    );
    // skopeo copies it back out; umoci unpacks it.
    let back = l.path("back");
    reg.skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:v1", back.display()),
    ]);
    let layout = Layout { dir: back };
    let bundle = l.path("bundle");
    layout.umoci(&[
        "unpack",
        "--image",
        &layout.image("v1"),
        bundle.to_str().unwrap(),
    ]);
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    // A second push uploads no blob again and gives the same digest.
    assert_eq!(l.ok(&["push", "fx", &reference]), out);
    // locker pulls it back and runs it.
    let l2 = Locker::new();
    expect_ok(&l2.run(&["pull", &reference]));
    assert_eq!(
        l2.ok(&["run", &reference, "/bin/sh", "-c", "echo pulled back"]),
        "pulled back\n"
    );
}

/// What `locker push` uploads runs under podman (from the registry, as users would).
/// podman 4.3 refuses this host's hybrid cgroup layout, so it runs in a private mount
/// namespace with a small tmpfs over /sys/fs/cgroup/unified (nothing on the host
/// changes), with its storage under the test's directory.
#[test]
fn oci_podman_runs_a_pushed_image() {
    let l = Locker::new();
    imported(&l, "fx");
    let reg = Registry::start(&l.path("registry"));
    let reference = reg.reference("pushed/for-podman:v1");
    l.ok(&["push", "fx", &reference]);
    // podman's containers and its conmon under a cgroup parent of the test's own.
    let parent =
        crate::harness::CgroupParent(format!("locker-test-podman-oci-{}", std::process::id()));
    let script = format!(
        "mount -t tmpfs -o size=16m,mode=755 tmpfs /sys/fs/cgroup/unified && \
         exec podman --root {root} --runroot {run} --cgroup-manager cgroupfs --events-backend none \
         run --rm --net none --tls-verify=false --cgroup-parent=/{parent} \
         --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
         docker://{reference} /bin/sh -c 'echo from-podman; cat /etc/passwd | head -1'",
        root = l.path("podman-root").display(),
        run = l.path("podman-run").display(),
        parent = parent.0,
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let r = run_bounded(cmd, Duration::from_secs(180));
    assert_eq!(r.code, Some(0), "{}", r.dump());
    assert!(r.stdout.starts_with("from-podman\nroot:"), "{}", r.dump());
}

#[test]
fn oci_layered_image_round_trips_through_push() {
    let f = fixture();
    let top = write(
        &f.l,
        "top.tar",
        &tar_of(&[
            ("etc/.wh.os-release", 'f', ""),
            ("home", 'd', ""),
            ("home/.wh..wh..opq", 'f', ""),
            ("home/kept", 'f', "k\n"),
        ]),
    );
    f.layout.add_layer("app", &top);
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/rt:v1", &[]);
    let src = f.reg.reference("team/rt:v1");
    expect_ok(&pull(&f.l, &src));
    let dst = f.reg.reference("copy/rt:v1");
    f.l.ok(&["push", &src, &dst]);
    let l2 = Locker::new();
    expect_ok(&l2.run(&["pull", &dst]));
    assert_eq!(layers(&l2).len(), 3);
    let out = l2.ok(&[
        "run",
        "--entrypoint",
        "/bin/sh",
        "-u",
        "0",
        &dst,
        "-c",
        "test -e /etc/os-release || echo gone; ls /home; echo $FROM_IMAGE; pwd",
    ]);
    assert_eq!(out, "gone\nkept\nyes\n/srv/app\n");
}

#[test]
fn oci_bearer_token_from_the_challenge_anonymous_and_with_credentials() {
    use crate::registry::TokenGate;
    let f = fixture();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/app:v1", &[]);
    // Anonymous tokens.
    let gate = TokenGate::start(f.reg.port, None);
    let reference = gate.reference("team/app:v1");
    expect_ok(&pull(&f.l, &reference));
    assert_eq!(f.l.ok(&["run", &reference, "t"]).trim(), "ep t");
    let asked = gate.token_requests.lock().unwrap().clone();
    assert!(!asked.is_empty(), "a token was requested");
    assert!(
        asked
            .iter()
            .all(|(q, _)| q.contains("scope=repository%3Ateam%2Fapp%3Apull")
                || q.contains("scope=repository:team/app:pull"))
            && asked.iter().all(|(q, _)| q.contains("service=locker-test")),
        "scope and service from the challenge: {asked:?}"
    );
    assert!(
        asked.iter().all(|(_, basic)| !basic),
        "anonymous: no credentials sent"
    );

    // A token server that wants credentials: refused without, granted with
    // ~/.docker/config.json's.
    let gate = TokenGate::start(f.reg.port, Some(("tok", "pw")));
    let reference = gate.reference("team/app:v1");
    let l2 = Locker::new();
    let r = pull(&l2, &reference);
    expect_fail(&r);
    assert!(r.stderr.contains("locker login"), "{}", r.dump());
    assert_nothing_stored(&l2, &r);
    let docker = l2.path("home/.docker");
    fs::create_dir_all(&docker).unwrap();
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("tok:pw")
    };
    fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#,
            gate.port
        ),
    )
    .unwrap();
    expect_ok(&pull(&l2, &reference));
    assert!(gate
        .token_requests
        .lock()
        .unwrap()
        .iter()
        .any(|(_, basic)| *basic));
}

#[test]
fn oci_catalog_entry_pinned_by_digest() {
    let f = fixture();
    f.reg
        .skopeo_push(&f.layout.skopeo_src("app"), "team/app:v1", &[]);
    let digest = manifest_digest(&f.reg, &f.reg.reference("team/app:v1"));
    let catalog = f.l.path("catalog.toml");
    fs::write(
        &catalog,
        format!(
            "[images.mini]\naliases = [\"mn\"]\noci = \"{}@{digest}\"\n",
            f.reg.reference("team/app")
        ),
    )
    .unwrap();
    let c = catalog.to_str().unwrap();
    expect_ok(&f.l.run(&["--catalog", c, "pull", "mn"]));
    assert_eq!(images_json(&f.l)[0]["name"], "mini");
    assert_eq!(f.l.ok(&["run", "mn", "x"]).trim(), "ep x");
    let again = f.l.run(&["--catalog", c, "pull", "mini"]);
    expect_ok(&again);
    assert!(again.stderr.contains("already present"), "{}", again.dump());
    fs::write(
        &catalog,
        format!(
            "[images.mini]\noci = \"{}\"\n",
            f.reg.reference("team/app:v1")
        ),
    )
    .unwrap();
    let r = f.l.run(&["--catalog", c, "pull", "mini"]);
    expect_fail(&r);
    assert!(r.stderr.contains("digest"), "{}", r.dump());
}

/// The busybox base and 119 small layers (hand-written layout: umoci takes seconds per
/// layer at this depth): layer N adds /layers/N; layer 60 whites out /layers/10.
fn deep_image(l: &Locker, reg: &Registry) -> String {
    let mut layers = vec![fixture_tar().to_vec()];
    for n in 1..120 {
        let file = format!("layers/{n}");
        let data = format!("{n}\n");
        let mut entries = vec![("layers", 'd', ""), (file.as_str(), 'f', data.as_str())];
        if n == 60 {
            entries.push(("layers/.wh.10", 'f', ""));
        }
        layers.push(tar_of(&entries));
    }
    let image = HandImage {
        layers,
        gzip: true,
        diff_ids: None,
        cmd: vec!["/bin/sh".into()],
    };
    let src = image.write(&l.path("deep-layout"), "v1");
    reg.skopeo_push(&src, "deep/stack:v1", &[]);
    reg.reference("deep/stack:v1")
}

const DEEP_CHECK: &str = "ls /layers | wc -l; cat /layers/119; test -e /layers/10 || echo gone";

/// The deep image seen whole through `run` (an upper on a tmpfs) and `run --read-only`
/// (no upper): 118 files, the top one, the whited-out one gone.
fn deep_runs(reference: &str, run: impl Fn(&[&str]) -> String) {
    for ro in [&[][..], &["--read-only"][..]] {
        let mut args = vec!["run"];
        args.extend_from_slice(ro);
        args.extend_from_slice(&[reference, "/bin/sh", "-c", DEEP_CHECK]);
        let out = run(&args);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, ["118", "119", "gone"], "{args:?}");
    }
}

#[test]
fn oci_image_with_120_layers_runs_on_the_new_mount_api() {
    let l = Locker::new();
    let reg = Registry::start(&l.path("registry"));
    let reference = deep_image(&l, &reg);
    expect_ok(&pull(&l, &reference));
    assert_eq!(layers(&l).len(), 120);
    deep_runs(&reference, |args| l.ok(args));
    assert!(
        names_in(&l.root().join("flat")).is_empty(),
        "lowerdir+ stacks all 120 layers: nothing flattened"
    );
}

#[test]
fn oci_image_with_120_layers_is_flattened_where_mount2_is_the_only_way() {
    let l = Locker::new();
    let reg = Registry::start(&l.path("registry"));
    let reference = deep_image(&l, &reg);
    expect_ok(&pull(&l, &reference));
    let legacy = |args: &[&str]| {
        let mut cmd = l.command(args);
        cmd.env("LOCKER_TEST_OVERLAY_LEGACY", "1");
        let r = run_bounded(cmd, Duration::from_secs(120));
        expect_ok(&r);
        r.stdout
    };
    // The second run (read-only, so the tree is bound) uses the cached tree.
    deep_runs(&reference, legacy);
    let flat = names_in(&l.root().join("flat"));
    assert_eq!(flat.len(), 1, "one cached flat tree: {flat:?}");
    // gc keeps it while the name lists its layers; rmi of the last name frees it.
    l.ok(&["gc"]);
    assert_eq!(names_in(&l.root().join("flat")), flat);
    l.ok(&["rmi", &reference]);
    assert!(names_in(&l.root().join("flat")).is_empty());
    assert!(layers(&l).is_empty());
}

#[test]
fn oci_layer_whose_diff_id_is_wrong_is_refused_and_nothing_stored() {
    let l = Locker::new();
    let reg = Registry::start(&l.path("registry"));
    let top = tar_of(&[("srv", 'd', ""), ("srv/x", 'f', "x\n")]);
    let image = |diff_ids: Option<Vec<String>>| HandImage {
        layers: vec![fixture_tar().to_vec(), top.clone()],
        gzip: true,
        diff_ids,
        cmd: vec!["/bin/true".into()],
    };
    // The config claims the top layer unpacks to the base layer's tar.
    use sha2::Digest;
    let base_id = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(fixture_tar()))
    );
    let lie = image(Some(vec![base_id.clone(), base_id]));
    reg.skopeo_push(&lie.write(&l.path("lie"), "v1"), "bad/diffid:v1", &[]);
    let r = pull(&l, &reg.reference("bad/diffid:v1"));
    expect_fail(&r);
    assert!(r.stderr.contains("diff_id"), "{}", r.dump());
    assert_nothing_stored(&l, &r);
    // Control: the same layers with the true diff_ids pull.
    let truth = image(None);
    reg.skopeo_push(&truth.write(&l.path("truth"), "v1"), "good/diffid:v1", &[]);
    expect_ok(&pull(&l, &reg.reference("good/diffid:v1")));
    assert_eq!(layers(&l).len(), 2);
    // The lie again, its blobs now in the store: the diff_ids recorded when they were
    // unpacked refuse it before anything is fetched.
    let r = pull(&l, &reg.reference("bad/diffid:v1"));
    expect_fail(&r);
    assert!(r.stderr.contains("diff_id"), "{}", r.dump());
    assert_eq!(images_json(&l).len(), 1, "{}", r.dump());
}

/// A credential helper as Docker runs them (`docker-credential-NAME get|store`, the
/// server on stdin, JSON out), as a shell script keeping one file per server under
/// `dir`, and logging each call.
fn credential_helper(l: &Locker, name: &str) -> (PathBuf, PathBuf) {
    let bin = l.path("helper-bin");
    let dir = l.path("helper-store");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"#!/bin/sh
d={dir}
case "$1" in
get)
    server=$(cat)
    echo "get $server" >> "$d/log"
    if [ -f "$d/$server" ]; then cat "$d/$server"; else echo "credentials not found in native keychain"; exit 1; fi ;;
store)
    cat > "$d/new"
    server=$(sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p' "$d/new")
    mv "$d/new" "$d/$server"
    echo "store $server" >> "$d/log" ;;
*) exit 2 ;;
esac
"#,
        dir = dir.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (bin, dir)
}

#[test]
fn oci_credential_helpers_from_creds_store_and_cred_helpers() {
    let l = Locker::new();
    let layout = Layout::init(&l.path("layout"));
    let base = write(&l, "base.tar", fixture_tar());
    layout.new_from_tar("app", &base);
    let reg = Registry::start_with(&l.path("registry"), Some(("tester", "s3cret")));
    reg.skopeo_push(&layout.skopeo_src("app"), "private/app:v1", &[]);
    let reference = reg.reference("private/app:v1");
    let host = reg.host();
    let (bin, store) = credential_helper(&l, "locker-test");
    let config = l.path("home/.docker/config.json");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let locker = |args: &[&str], stdin: Option<&str>| -> Run {
        let mut cmd = l.command(args);
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env("PATH", &path);
        if let Some(text) = stdin {
            let input = l.path("stdin");
            fs::write(&input, text).unwrap();
            cmd.stdin(fs::File::open(&input).unwrap());
        }
        run_bounded(cmd, Duration::from_secs(120))
    };
    let log = || fs::read_to_string(store.join("log")).unwrap_or_default();

    // credsStore with nothing stored: anonymous, so the registry asks for a login.
    fs::write(&config, r#"{"credsStore":"locker-test"}"#).unwrap();
    let r = locker(&["pull", &reference], None);
    expect_fail(&r);
    assert!(r.stderr.contains("locker login"), "{}", r.dump());
    assert_eq!(
        log(),
        format!("get {host}\n"),
        "the server went to the helper on stdin"
    );
    assert_nothing_stored(&l, &r);

    // login stores through the helper, not into the file; then pull gets them back.
    let r = locker(
        &["login", &host, "-u", "tester", "--password-stdin"],
        Some("s3cret\n"),
    );
    expect_ok(&r);
    assert!(log().contains(&format!("store {host}\n")), "{}", log());
    assert!(!fs::read_to_string(&config).unwrap().contains("auths"));
    expect_ok(&locker(&["pull", &reference], None));
    assert_eq!(layers(&l).len(), 1);

    // credHelpers names the helper for this registry ahead of a credsStore that is
    // not installed; the credsStore alone fails with a clear message.
    fs::write(
        &config,
        format!(r#"{{"credsStore":"not-installed","credHelpers":{{"{host}":"locker-test"}}}}"#),
    )
    .unwrap();
    l.ok(&["rmi", &reference]);
    expect_ok(&locker(&["pull", &reference], None));
    fs::write(&config, r#"{"credsStore":"not-installed"}"#).unwrap();
    l.ok(&["rmi", &reference]);
    let r = locker(&["pull", &reference], None);
    expect_fail(&r);
    assert!(
        r.stderr.contains("docker-credential-not-installed"),
        "{}",
        r.dump()
    );
    assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"));
}

/// The blob uploads (PUT with `digest=`) and mount requests the registry has logged.
fn registry_requests(reg: &Registry) -> (usize, usize) {
    let log = fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default();
    let puts = log
        .lines()
        .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/"))
        .count();
    let mounts = log
        .lines()
        .filter(|l| l.contains("\"POST /v2/") && l.contains("mount=sha256"))
        .count();
    (puts, mounts)
}

#[test]
fn oci_push_again_sends_nothing_and_another_repository_mounts_the_blobs() {
    let l = Locker::new();
    imported(&l, "fx");
    let reg = Registry::start(&l.path("registry"));
    let first = reg.reference("team/a:v1");
    let r = l.run(&["--verbose", "push", "fx", &first]);
    expect_ok(&r);
    assert!(
        r.stderr.contains("2 blobs uploaded (0 resumed), 0 mounted"),
        "{}",
        r.dump()
    );
    let (puts, mounts) = registry_requests(&reg);
    assert_eq!((puts, mounts), (2, 0), "layer and config uploaded once");

    // Pushing again (as after an interrupted push) sends no blob: HEAD finds them.
    let r = l.run(&["--verbose", "push", "fx", &first]);
    expect_ok(&r);
    assert!(
        r.stderr.contains(
            "0 blobs uploaded (0 resumed), 0 mounted from another repository, 2 already there"
        ),
        "{}",
        r.dump()
    );
    assert_eq!(registry_requests(&reg), (2, 0));

    // Another repository of the same registry: mounted from the first, no bytes sent.
    let second = reg.reference("other/b:v1");
    let r = l.run(&["--verbose", "push", "fx", &second]);
    expect_ok(&r);
    assert!(
        r.stderr.contains("0 blobs uploaded (0 resumed), 2 mounted"),
        "{}",
        r.dump()
    );
    assert_eq!(registry_requests(&reg), (2, 2));
    let l2 = Locker::new();
    expect_ok(&l2.run(&["pull", &second]));
    assert_eq!(
        l2.ok(&["run", &second, "/bin/sh", "-c", "echo mounted"]),
        "mounted\n"
    );

    // Control: a store that never pushed there uploads (no mount source known).
    let l3 = Locker::new();
    imported(&l3, "fx");
    let third = reg.reference("third/c:v1");
    let r = l3.run(&["--verbose", "push", "fx", &third]);
    expect_ok(&r);
    assert!(
        r.stderr.contains("2 blobs uploaded (0 resumed), 0 mounted"),
        "{}",
        r.dump()
    );
}

#[test]
fn oci_push_cut_off_midway_resumes_where_the_registry_stopped() {
    let l = Locker::new();
    imported(&l, "fx");
    let reg = Registry::start(&l.path("registry"));
    // Chunks of 128 KiB; the proxy drops the third PATCH (the connection closes unanswered).
    let proxy = CutProxy::start(reg.port, 3);
    let reference = proxy.reference("team/resumed:v1");
    let push = || {
        let mut cmd = l.command(&["--verbose", "push", "fx", &reference]);
        cmd.env("LOCKER_TEST_PUSH_CHUNK", "131072");
        run_bounded(cmd, Duration::from_secs(120))
    };
    let patches_logged = || {
        fs::read_to_string(reg.dir.join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"PATCH /v2/"))
            .count()
    };
    let r = push();
    expect_fail(&r);
    assert_eq!(
        patches_logged(),
        2,
        "two chunks arrived before the cut\n{}",
        r.dump()
    );
    let r = push();
    expect_ok(&r);
    assert!(
        r.stderr.contains("2 blobs uploaded (1 resumed)"),
        "{}",
        r.dump()
    );
    let sent = proxy.patches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent > 4, "the layer took several chunks: {sent}");
    assert_eq!(
        patches_logged(),
        sent - 1,
        "every chunk reached the registry once: none sent again after the cut"
    );
    // The registry checked the whole blob against its digest; it runs.
    let l2 = Locker::new();
    let direct = reg.reference("team/resumed:v1");
    expect_ok(&l2.run(&["pull", &direct]));
    assert_eq!(
        l2.ok(&["run", &direct, "/bin/sh", "-c", "echo resumed"]),
        "resumed\n"
    );
}

#[test]
fn oci_image_with_120_layers_under_userns_auto_is_flattened_then_idmapped() {
    crate::rootless::users(); // the `locker` range in /etc/subuid
    let l = Locker::new();
    let reg = Registry::start(&l.path("registry"));
    let reference = deep_image(&l, &reg);
    expect_ok(&pull(&l, &reference));
    // --userns auto idmaps each lower layer (one fd each, at most 48): past that the
    // stack is flattened first and the one tree idmapped.
    let script = format!("cat /proc/self/uid_map; {DEEP_CHECK}");
    let out = l.ok(&[
        "run", "--net", "none", "--userns", "auto", &reference, "/bin/sh", "-c", &script,
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words[0], "0", "root of its own range: {out}");
    assert_ne!(words[1], "0", "not the host's root: {out}");
    assert_eq!(&words[3..], ["118", "119", "gone"], "{out}");
    assert_eq!(names_in(&l.root().join("flat")).len(), 1);
}
