//! Real registries for the OCI tests: Debian's `docker-registry` (the distribution
//! registry) started by the test on 127.0.0.1 only, with its own config file and
//! storage in the test's temp dir (never the packaged service or its config, which
//! listens on every interface), optionally with htpasswd Basic auth. Images are made
//! with `umoci` and copied in with `skopeo`. Every process started here is killed by
//! PID and reaped on drop.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{run_bounded, Run};

/// Fails loudly when a tool is missing (tests/run.sh installs them).
pub fn tool(name: &str) -> &'static str {
    for dir in ["/usr/bin", "/usr/sbin", "/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return Box::leak(p.into_boxed_str());
        }
    }
    panic!("{name} not found: bash tests/run.sh installs it (docker-registry, skopeo, umoci, apache2-utils)");
}

pub fn must(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null());
    let r = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "command failed\n{}", r.dump());
    r
}

/// A free port on 127.0.0.1 (bound and released; the registry binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Registry {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub auth: Option<(String, String)>,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, None)
    }

    /// With `auth`, the registry wants these Basic credentials (htpasswd, bcrypt).
    pub fn start_with(dir: &Path, auth: Option<(&str, &str)>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match auth {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                let mut cmd = Command::new(tool("htpasswd"));
                cmd.args(["-B", "-b", "-c"]).arg(&htpasswd).args([user, password]);
                must(cmd);
                format!(
                    "auth:\n  htpasswd:\n    realm: locker-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                    storage.display()
                ),
            )
            .unwrap();
            let child = Command::new(tool("docker-registry"))
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry {
                child,
                dir: dir.to_path_buf(),
                port,
                auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            };
            if reg.wait_ready(Duration::from_secs(20)) {
                return reg;
            }
            let mut err = String::new();
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            if let Some(mut e) = reg.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            last = err;
            // Drop kills nothing more: the child was reaped.
            std::mem::forget(reg);
        }
        panic!("docker-registry did not start:\n{last}");
    }

    /// Bounded wait for the port to accept while the child lives.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// `skopeo copy SRC docker://HOST/REPO_TAG` (plain HTTP to the loopback registry).
    pub fn skopeo_push(&self, src: &str, repo_tag: &str, extra: &[&str]) {
        let mut cmd = Command::new(tool("skopeo"));
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.args(extra)
            .arg(src)
            .arg(format!("docker://{}", self.reference(repo_tag)));
        cmd.env("HOME", self.dir.join("skopeo-home"));
        must(cmd);
    }

    /// `skopeo inspect --raw` of a reference in this registry.
    pub fn skopeo(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(tool("skopeo"));
        cmd.args(args);
        cmd.env("HOME", self.dir.join("skopeo-home"));
        must(cmd)
    }

    /// The file the filesystem driver keeps blob `hex` in.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout made with umoci, one tag at a time.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn init(dir: &Path) -> Layout {
        let mut cmd = Command::new(tool("umoci"));
        cmd.args(["init", "--layout"]).arg(dir);
        must(cmd);
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }

    pub fn umoci(&self, args: &[&str]) {
        let mut cmd = Command::new(tool("umoci"));
        cmd.args(args);
        must(cmd);
    }

    /// A new tag whose first layer is `tar` (uncompressed; umoci gzips it).
    pub fn new_from_tar(&self, tag: &str, tar: &Path) {
        self.umoci(&["new", "--image", &self.image(tag)]);
        self.add_layer(tag, tar);
    }

    pub fn add_layer(&self, tag: &str, tar: &Path) {
        self.umoci(&[
            "raw",
            "add-layer",
            "--no-history",
            "--image",
            &self.image(tag),
            tar.to_str().unwrap(),
        ]);
    }

    pub fn config(&self, tag: &str, args: &[&str]) {
        let mut all = vec!["config", "--no-history", "--image"];
        let image = self.image(tag);
        all.push(&image);
        all.extend_from_slice(args);
        self.umoci(&all);
    }

    /// `oci:DIR:TAG` for skopeo.
    pub fn skopeo_src(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}
