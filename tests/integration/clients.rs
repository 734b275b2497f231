//! Real clients over `locker-runtime`: podman (through conmon, as on any podman host)
//! runs an image from a loopback registry with locker as its OCI runtime: `run` with
//! the exit code, `run -d`, `exec` (conmon's `--process` JSON with rlimits, detached,
//! with a pid file), `exec -t` and `run -t` (the console socket), `stop` and `rm`, and
//! nothing of the runtime's left after `rm`. containerd 1.6 (a daemon of the test's
//! own, its runc shim v2 given `--runc-binary`) runs `ctr run`, `run -d`, `task exec`,
//! `task kill`, `task rm` the same way. buildah runs build steps (`buildah run
//! --runtime`) on a working container from the same registry.
//!
//! podman 4.3 refuses this host's hybrid cgroup layout, so it runs in a private mount
//! namespace with a small tmpfs over /sys/fs/cgroup/unified (nothing on the host
//! changes); its storage, the runtime's state and the containers' cgroup parent are the
//! test's own.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{fixture_tar, locker_bin, require_root, run_bounded, CgroupParent, Locker};
use crate::registry::Registry;

/// The fixture tree, imported and pushed to a loopback registry of the test's own
/// (kept running while the registry value lives): its reference.
fn pushed_fixture(l: &Locker, repo_tag: &str) -> (Registry, String) {
    let tar = l.path("rootfs.tar");
    std::fs::write(&tar, fixture_tar()).unwrap();
    l.ok(&["import", tar.to_str().unwrap(), "--name", "fx"]);
    let reg = Registry::start(&l.path("registry"));
    let reference = reg.reference(repo_tag);
    l.ok(&["push", "fx", &reference]);
    (reg, reference)
}

#[test]
fn podman_runs_an_image_on_locker_runtime() {
    let l = Locker::new();
    let (_reg, reference) = pushed_fixture(&l, "for/locker-runtime:v1");

    // The runtime podman calls, with a state root of the test's (podman's
    // --runtime-flag is not passed on to the `--rm` cleanup's delete).
    let state: PathBuf = l.path("runtime-state");
    let (runtime, calls) = logged_runtime(&l.path(""), &format!("--root {}", state.display()));
    let parent = CgroupParent(format!("locker-test-podman-{}", std::process::id()));
    let podman = format!(
        "podman --root {root} --runroot {run} --cgroup-manager cgroupfs --events-backend none \
         --runtime {runtime}",
        root = l.path("podman-root").display(),
        run = l.path("podman-run").display(),
        runtime = runtime.display(),
    );
    let opts = format!(
        "--net none --tls-verify=false --cgroup-parent=/{} \
         --ulimit nofile=20000:20000 --ulimit nproc=32768:32768",
        parent.0
    );
    let image = format!("docker://{reference}");
    let script = format!(
        "set -u
         mount -t tmpfs -o size=16m,mode=755 tmpfs /sys/fs/cgroup/unified || exit 99
         P=\"{podman}\"
         $P pull -q --tls-verify=false {image} > /dev/null || exit 98
         $P run --rm {opts} {image} sh -c 'echo from-locker-runtime; exit 3'; echo \"run=$?\"
         $P run -d --name d1 {opts} {image} sleep 60 > /dev/null; echo \"run-d=$?\"
         $P exec d1 sh -c 'echo in-exec $(id -u) $(ulimit -n)'; echo \"exec=$?\"
         $P exec -t d1 tty; echo \"exec-t=$?\"
         $P run --rm -t {opts} {image} tty; echo \"run-t=$?\"
         $P stop -t 1 d1 > /dev/null 2>&1; echo \"stop=$?\"
         $P rm d1 > /dev/null; echo \"rm=$?\"
         {bin} oci --root {state} list; echo \"list=$?\"",
        bin = locker_bin(),
        state = state.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let r = run_bounded(cmd, Duration::from_secs(240));
    assert_eq!(r.code, Some(0), "{}", r.dump());
    let out = r.stdout.replace('\r', "");
    for want in [
        "from-locker-runtime\nrun=3\n",
        "run-d=0\n",
        // conmon's process.json sets rlimits: exec applies them.
        "in-exec 0 20000\nexec=0\n",
        "/dev/pts/0\nexec-t=0\n",
        "/dev/pts/0\nrun-t=0\n",
        "stop=0\nrm=0\n",
    ] {
        assert!(out.contains(want), "{want:?} in\n{}", r.dump());
    }
    // After rm, the runtime holds no container.
    let listed: Vec<&str> = out
        .split("rm=0\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with("ID") && !l.starts_with("list="))
        .collect();
    assert!(listed.is_empty(), "left: {listed:?}\n{}", r.dump());
    assert!(out.ends_with("list=0\n"), "{}", r.dump());
    // podman went through locker-runtime for every step.
    let verbs = verbs(&calls);
    for v in ["create", "start", "exec", "kill", "delete"] {
        assert!(verbs.iter().any(|x| x == v), "{v} in {verbs:?}");
    }
}

/// A script standing in for the runtime binary: locker under the name
/// locker-runtime, logging each call (so a test knows the client went through it),
/// with `extra` global options first.
fn logged_runtime(dir: &std::path::Path, extra: &str) -> (PathBuf, PathBuf) {
    let calls = dir.join("calls");
    let runtime = dir.join("locker-runtime-logged");
    std::fs::write(
        &runtime,
        format!(
            "#!/bin/bash\nprintf '%s\\n' \"$*\" >> {calls}\n\
             exec -a locker-runtime {bin} {extra} \"$@\"\n",
            calls = calls.display(),
            bin = locker_bin(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    (runtime, calls)
}

/// The verbs of a logged runtime's calls (the first word of each that is one of
/// runc's verbs; global options and their values come before it).
fn verbs(calls: &std::path::Path) -> Vec<String> {
    const VERBS: &[&str] = &[
        "create", "start", "state", "kill", "delete", "exec", "run", "ps", "pause", "resume",
        "list", "features", "spec",
    ];
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| VERBS.contains(w))
                .map(str::to_string)
        })
        .collect()
}

/// DIR/config.toml for a containerd of the test's own: its root, state and sockets
/// under DIR, then `top` (top-level keys) and `tables`.
fn containerd_config(d: &std::path::Path, top: &str, tables: &str) {
    std::fs::write(
        d.join("config.toml"),
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n{top}\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n{tables}",
            d = d.display()
        ),
    )
    .unwrap();
}

/// Shell lines starting that containerd as the script's child, ended by the script's
/// EXIT trap; the wait for its socket is bounded.
fn containerd_up(d: &std::path::Path) -> String {
    format!(
        "containerd --config {d}/config.toml > {d}/containerd.log 2>&1 &
         CPID=$!
         trap 'kill $CPID; wait $CPID' EXIT
         for i in $(seq 100); do [ -S {d}/c.sock ] && break; sleep 0.1; done",
        d = d.display()
    )
}

#[test]
fn containerd_runs_tasks_on_locker_runtime() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("locker-ctr-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let d = dir.path();
    let rootfs = d.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    tar::Archive::new(fixture_tar()).unpack(&rootfs).unwrap();
    let (runtime, calls) = logged_runtime(d, "");
    containerd_config(
        d,
        "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        "",
    );
    let parent = CgroupParent(format!("locker-test-ctr-{}", std::process::id()));
    let run = |id: &str| {
        format!(
            "--runc-binary {rt} --runc-root {d}/runc --cgroup /{p}/{id} --rootfs {d}/rootfs {id}",
            rt = runtime.display(),
            d = d.display(),
            p = parent.0,
        )
    };
    // The daemon is the script's child, ended by its trap; every wait is bounded.
    let script = format!(
        "set -u
         {up}
         C=\"ctr --address {d}/c.sock\"
         $C run --rm {t1} sh -c 'echo from-ctr; exit 4'; echo \"run=$?\"
         $C run -d {t2} sleep 60; echo \"run-d=$?\"
         $C task exec --exec-id e1 t2 sh -c 'echo in-exec $(id -u)'; echo \"exec=$?\"
         $C task kill -s KILL t2; echo \"kill=$?\"
         for i in $(seq 100); do $C task ls | grep -q 't2.*STOPPED' && break; sleep 0.1; done
         $C task rm t2; echo \"task-rm=$?\"
         $C container rm t2; echo \"container-rm=$?\"
         {bin} oci --root {d}/runc list -q; echo \"list=$?\"",
        d = d.display(),
        t1 = run("t1"),
        t2 = run("t2"),
        bin = locker_bin(),
        up = containerd_up(d),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let r = run_bounded(cmd, Duration::from_secs(180));
    let log = std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default();
    assert_eq!(r.code, Some(0), "{}\n--- containerd\n{log}", r.dump());
    for want in [
        "from-ctr\nrun=4\n",
        "run-d=0\n",
        "in-exec 0\nexec=0\n",
        "kill=0\n",
        "task-rm=0\ncontainer-rm=0\nlist=0\n",
    ] {
        assert!(r.stdout.contains(want), "{want:?} in\n{}", r.dump());
    }
    // (The shim's cleanup then force-deletes what is gone, which succeeds; under load
    // its reaper sometimes takes that exit status first and it logs "exit status 255".)
    let verbs = verbs(&calls);
    for v in ["create", "start", "exec", "kill", "delete"] {
        assert!(verbs.iter().any(|x| x == v), "{v} in {verbs:?}");
    }
}

/// crictl, built by tests/run.sh from ../shared/peers (LOCKER_CRICTL names it).
fn crictl() -> String {
    let path = std::env::var("LOCKER_CRICTL")
        .unwrap_or_else(|_| "/var/cache/locker-tests/crictl-ba03eab".into());
    assert!(
        std::path::Path::new(&path).is_file(),
        "crictl missing at {path}: bash tests/run.sh builds it"
    );
    path
}

/// Kubernetes' path: containerd's CRI plugin with a `locker` runtime handler
/// (`runtime_type = io.containerd.runc.v2`, `options.BinaryName` = locker-runtime, as
/// the README's RuntimeClass section registers it), driven by crictl: `runp`, `create`,
/// `start`, `exec`, `logs`, `stop`, `rm`, `stopp`, `rmp`. Pod networking: the daemon
/// runs in a network namespace of the test's own with only `lo` (no route anywhere),
/// and the pod uses the node's (that) network, so no CNI plugin is involved. The
/// images (a pause image and the busybox fixture) are made with umoci and imported
/// with ctr: no registry, no network.
#[test]
fn crictl_runs_pods_through_the_cri_plugin_on_locker_runtime() {
    require_root();
    let crictl = crictl();
    let dir = tempfile::Builder::new()
        .prefix("locker-cri-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("rootfs")).unwrap();
    tar::Archive::new(fixture_tar())
        .unpack(d.join("rootfs"))
        .unwrap();
    let (runtime, calls) = logged_runtime(d, "");
    let parent = CgroupParent(format!("locker-test-cri-{}", std::process::id()));
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    containerd_config(
        d,
        "",
        &format!(
            "[{cri}]\n  sandbox_image = \"locker.test/img:pause\"\n  disable_apparmor = true\n\
             \x20 restrict_oom_score_adj = true\n\
             [{cri}.containerd]\n  default_runtime_name = \"locker\"\n\
             [{cri}.containerd.runtimes.locker]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [{cri}.containerd.runtimes.locker.options]\n  BinaryName = \"{rt}\"\n\
             \x20 Root = \"{d}/runc\"\n\
             [{cri}.cni]\n  bin_dir = \"{d}/cni/bin\"\n  conf_dir = \"{d}/cni/conf\"\n",
            d = d.display(),
            rt = runtime.display(),
        ),
    );
    std::fs::write(
        d.join("pod.json"),
        format!(
            "{{\"metadata\":{{\"name\":\"p1\",\"namespace\":\"locker-test\",\"uid\":\"u1\"}},\
             \"log_directory\":\"{d}/logs\",\"linux\":{{\"cgroup_parent\":\"/{p}\",\
             \"security_context\":{{\"namespace_options\":{{\"network\":2}}}}}}}}",
            d = d.display(),
            p = parent.0,
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ctr.json"),
        "{\"metadata\":{\"name\":\"c1\"},\"image\":{\"image\":\"locker.test/img:fix\"},\
         \"command\":[\"sh\",\"-c\",\"echo from-cri; exec sleep 60\"],\"log_path\":\"c1.log\",\
         \"linux\":{}}",
    )
    .unwrap();
    // The daemon is the script's child, ended by its trap; every wait is bounded.
    let script = format!(
        "set -u
         ip link set lo up
         U=umoci; I={d}/img
         $U init --layout $I && $U new --image $I:fix && $U unpack --image $I:fix {d}/b >/dev/null &&
         rm -rf {d}/b/rootfs && mv {d}/rootfs {d}/b/rootfs && $U repack --image $I:fix {d}/b &&
         $U config --image $I:fix --config.entrypoint /bin/sleep --config.cmd inf --tag pause &&
         $U config --image $I:fix --config.cmd /bin/sh --tag fix &&
         tar -C $I -cf {d}/img.tar . || exit 9
         {up}
         ctr --address {d}/c.sock -n k8s.io images import --base-name locker.test/img {d}/img.tar >/dev/null
         echo \"import=$?\"
         CR=\"{crictl} --runtime-endpoint unix://{d}/c.sock --image-endpoint unix://{d}/c.sock --timeout 60s\"
         POD=$($CR runp --runtime locker {d}/pod.json); echo \"runp=$?\"
         CID=$($CR create $POD {d}/ctr.json {d}/pod.json); echo \"create=$?\"
         $CR start $CID >/dev/null; echo \"start=$?\"
         $CR exec $CID sh -c 'echo in-exec $(id -u)'; echo \"exec=$?\"
         for i in $(seq 100); do $CR logs $CID 2>/dev/null | grep -q from-cri && break; sleep 0.1; done
         $CR logs $CID; echo \"logs=$?\"
         $CR stop -t 1 $CID >/dev/null; echo \"stop=$?\"
         $CR rm $CID >/dev/null; echo \"rm=$?\"
         $CR stopp $POD >/dev/null; echo \"stopp=$?\"
         $CR rmp $POD >/dev/null; echo \"rmp=$?\"
         echo \"left=$({bin} oci --root {d}/runc/k8s.io list -q | wc -l)\"",
        d = d.display(),
        bin = locker_bin(),
        up = containerd_up(d),
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--net",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]);
    let r = run_bounded(cmd, Duration::from_secs(240));
    let log = std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default();
    assert_eq!(r.code, Some(0), "{}\n--- containerd\n{log}", r.dump());
    for want in [
        "import=0\nrunp=0\ncreate=0\nstart=0\n",
        "in-exec 0\nexec=0\n",
        "from-cri\nlogs=0\n",
        "stop=0\nrm=0\nstopp=0\nrmp=0\nleft=0\n",
    ] {
        assert!(
            r.stdout.contains(want),
            "{want:?} in\n{}\n--- containerd\n{log}",
            r.dump()
        );
    }
    let verbs = verbs(&calls);
    for v in ["create", "start", "exec", "kill", "delete"] {
        assert!(verbs.iter().any(|x| x == v), "{v} in {verbs:?}");
    }
}

#[test]
fn buildah_runs_build_steps_on_locker_runtime() {
    let l = Locker::new();
    let (_reg, reference) = pushed_fixture(&l, "for/buildah:v1");
    let state: PathBuf = l.path("runtime-state");
    let (runtime, calls) = logged_runtime(&l.path(""), &format!("--root {}", state.display()));
    let script = format!(
        "set -u
         mount -t tmpfs -o size=16m,mode=755 tmpfs /sys/fs/cgroup/unified || exit 99
         B=\"buildah --root {root} --runroot {run}\"
         c=$($B from -q --tls-verify=false docker://{reference}) || exit 98
         R=\"$B run --runtime {runtime} --network none $c --\"
         $R sh -c 'echo from-buildah $(id -u); echo built > /built'; echo \"step1=$?\"
         $R cat /built; echo \"step2=$?\"
         $R sh -c 'exit 5' 2>/dev/null; echo \"step3=$?\"
         $B rm $c > /dev/null; echo \"rm=$?\"
         {bin} oci --root {state} list -q; echo \"list=$?\"",
        root = l.path("buildah-root").display(),
        run = l.path("buildah-run").display(),
        runtime = runtime.display(),
        bin = locker_bin(),
        state = state.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let r = run_bounded(cmd, Duration::from_secs(180));
    assert_eq!(r.code, Some(0), "{}", r.dump());
    // A step's writes stay in the working container for the next step; a failing
    // step's code reaches buildah; the runtime holds nothing afterwards.
    assert_eq!(
        r.stdout,
        "from-buildah 0\nstep1=0\nbuilt\nstep2=0\nstep3=5\nrm=0\nlist=0\n",
        "{}",
        r.dump()
    );
    let verbs = verbs(&calls);
    for v in ["create", "start", "delete"] {
        assert!(verbs.iter().any(|x| x == v), "{v} in {verbs:?}");
    }
}
