//! Test images made directly in a test's store (no pull): the busybox fixture unpacked
//! under ROOT/rootfs/<sha256 of the tar>/ and named in ROOT/refs.json.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::harness::{fixture_tar, Locker};

/// Installs the fixture rootfs as image `name`; returns its rootfs directory.
pub fn install_fixture(l: &Locker, name: &str) -> PathBuf {
    let tar = fixture_tar();
    let hex = hex::encode(Sha256::digest(tar));
    let root = l.root();
    let rootfs = root.join("rootfs").join(&hex);
    if !rootfs.exists() {
        let tmp = root.join("rootfs").join(format!(".{hex}.tmp"));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut a = tar::Archive::new(tar);
        a.set_preserve_permissions(true);
        a.unpack(&tmp).expect("unpack fixture");
        std::fs::rename(&tmp, &rootfs).unwrap();
    }
    let refs_path = root.join("refs.json");
    let mut refs: serde_json::Value = match std::fs::read(&refs_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => serde_json::json!({"images": {}}),
    };
    refs["images"][name] = serde_json::json!({"digest": hex, "aliases": [], "source": "fixture", "created": 0, "size": 0});
    std::fs::write(&refs_path, serde_json::to_vec_pretty(&refs).unwrap()).unwrap();
    rootfs
}
