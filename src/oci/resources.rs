//! An OCI config's `linux.resources` beyond what the engine's `Limits` carry (memory,
//! pids and a cpu quota, which it writes itself): written by `create` into the
//! container's cgroups between the clone and the release, so PID 1 runs under them
//! from its first instruction. v1 files by controller, or the cgroup2 equivalents.
//!
//! A value the host cannot take (no hugetlb or net_cls controller, no kmem accounting,
//! an I/O scheduler without weights) fails `create` with the file and the kernel's
//! error: never a limit silently missing.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::OciError;

/// One write: controller (v1 name; "" on cgroup2), file, value.
type Write = (&'static str, String, String);

fn unsupported(field: &str, why: &str) -> OciError {
    OciError::Unsupported {
        field: format!("linux.resources.{field}"),
        why: why.into(),
    }
}

/// The v1 writes for `r`, in an order the kernel accepts (period before quota,
/// memory limit before memsw).
pub(crate) fn v1_writes(r: &LinuxResources) -> Vec<Write> {
    let mut w: Vec<Write> = Vec::new();
    let mut put = |c: &'static str, f: &str, v: String| w.push((c, f.to_string(), v));
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            put("memory", "memory.limit_in_bytes", l.to_string());
        }
        if let Some(v) = m.reservation() {
            put("memory", "memory.soft_limit_in_bytes", v.to_string());
        }
        if let Some(v) = m.swap() {
            put("memory", "memory.memsw.limit_in_bytes", v.to_string());
        }
        if let Some(v) = m.kernel() {
            put("memory", "memory.kmem.limit_in_bytes", v.to_string());
        }
        if let Some(v) = m.kernel_tcp() {
            put("memory", "memory.kmem.tcp.limit_in_bytes", v.to_string());
        }
        if let Some(v) = m.swappiness() {
            put("memory", "memory.swappiness", v.to_string());
        }
        if m.disable_oom_killer() == Some(true) {
            put("memory", "memory.oom_control", "1".into());
        }
        if let Some(v) = m.use_hierarchy() {
            put("memory", "memory.use_hierarchy", (v as u8).to_string());
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            put("cpu", "cpu.shares", v.to_string());
        }
        if let Some(v) = c.period() {
            put("cpu", "cpu.cfs_period_us", v.to_string());
        }
        if let Some(v) = c.quota() {
            put("cpu", "cpu.cfs_quota_us", v.to_string());
        }
        if let Some(v) = c.burst() {
            put("cpu", "cpu.cfs_burst_us", v.to_string());
        }
        if let Some(v) = c.realtime_period() {
            put("cpu", "cpu.rt_period_us", v.to_string());
        }
        if let Some(v) = c.realtime_runtime() {
            put("cpu", "cpu.rt_runtime_us", v.to_string());
        }
        if let Some(v) = c.idle() {
            put("cpu", "cpu.idle", v.to_string());
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            put("cpuset", "cpuset.cpus", v.to_string());
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            put("cpuset", "cpuset.mems", v.to_string());
        }
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            put("blkio", "blkio.weight", v.to_string());
        }
        if let Some(v) = b.leaf_weight() {
            put("blkio", "blkio.leaf_weight", v.to_string());
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                put(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {v}", d.major(), d.minor()),
                );
            }
            if let Some(v) = d.leaf_weight() {
                put(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{}:{} {v}", d.major(), d.minor()),
                );
            }
        }
        for (file, list) in [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ] {
            for d in list.iter().flatten() {
                put(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                );
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        put(
            "hugetlb",
            &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit().to_string(),
        );
    }
    if let Some(n) = r.network() {
        if let Some(v) = n.class_id() {
            put("net_cls", "net_cls.classid", v.to_string());
        }
        for p in n.priorities().iter().flatten() {
            put(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            );
        }
    }
    // The config's rules come first in the list (applied in order, as the runtime
    // spec asks): the engine's default allow-list is taken out, then put back after.
    let device_rules = r.devices().as_ref().is_some_and(|d| !d.is_empty());
    if device_rules {
        for rule in crate::run::devices::DEFAULT_ALLOW {
            put("devices", "devices.deny", rule.v1_line());
        }
    }
    for d in r.devices().iter().flatten() {
        // The engine's list starts with "deny all" (devices.deny `a`, which the kernel
        // takes only before the cgroup has tasks): an OCI config's first rule is the same.
        if !d.allow() && d.typ().is_none_or(|t| t.as_str() == "a") && d.major().is_none() {
            continue;
        }
        let typ = d
            .typ()
            .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        let line = if typ == "a" {
            "a".to_string()
        } else {
            format!(
                "{typ} {}:{} {}",
                num(d.major()),
                num(d.minor()),
                d.access().as_deref().unwrap_or("rwm")
            )
        };
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        put("devices", file, line);
    }
    if device_rules {
        for rule in crate::run::devices::DEFAULT_ALLOW {
            put("devices", "devices.allow", rule.v1_line());
        }
    }
    w
}

/// The cgroup2 writes for `r` (unified keys last, as they override).
pub(crate) fn v2_writes(r: &LinuxResources) -> Result<Vec<Write>, OciError> {
    let mut w: Vec<Write> = Vec::new();
    let mut put = |f: &str, v: String| w.push(("", f.to_string(), v));
    let max = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            put("memory.max", max(l));
        }
        if let Some(v) = m.reservation() {
            put("memory.low", max(v));
        }
        if let Some(s) = m.swap() {
            // v1's swap is memory+swap; v2's is swap alone.
            let l = m.limit().unwrap_or(-1);
            put(
                "memory.swap.max",
                if s < 0 || l < 0 {
                    max(s)
                } else {
                    (s - l).max(0).to_string()
                },
            );
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() || m.swappiness().is_some() {
            return Err(unsupported(
                "memory",
                "kernel, kernelTCP and swappiness do not exist on cgroup v2",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            // runc's conversion of shares [2, 262144] to weight [1, 10000].
            let weight = 1 + ((s.clamp(2, 262144) - 2) * 9999) / 262142;
            put("cpu.weight", weight.to_string());
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".into(), |q| q.to_string());
            put("cpu.max", format!("{q} {}", c.period().unwrap_or(100_000)));
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            put("cpuset.cpus", v.to_string());
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            put("cpuset.mems", v.to_string());
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(unsupported(
                "cpu",
                "realtime limits do not exist on cgroup v2",
            ));
        }
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            put("io.weight", v.to_string());
        }
        if b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
            || b.throttle_read_bps_device()
                .as_ref()
                .is_some_and(|d| !d.is_empty())
            || b.throttle_write_bps_device()
                .as_ref()
                .is_some_and(|d| !d.is_empty())
            || b.throttle_read_iops_device()
                .as_ref()
                .is_some_and(|d| !d.is_empty())
            || b.throttle_write_iops_device()
                .as_ref()
                .is_some_and(|d| !d.is_empty())
        {
            return Err(unsupported("blockIO", "per-device limits on cgroup v2"));
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        put(
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        );
    }
    if r.network().is_some() {
        return Err(unsupported(
            "network",
            "net_cls/net_prio do not exist on cgroup v2",
        ));
    }
    if r.devices().iter().flatten().any(|d| d.allow()) {
        return Err(unsupported(
            "devices",
            "on cgroup v2 locker's device filter (the default devices) always applies",
        ));
    }
    for (k, v) in r.unified().iter().flatten() {
        if k.contains('/') || k.starts_with('.') {
            return Err(unsupported("unified", &format!("bad key {k:?}")));
        }
        put(k, v.clone());
    }
    Ok(w)
}

/// The directory of `controller` among the container's cgroups (v1: the hierarchy
/// whose name lists it; "": the cgroup2 one).
fn dir_for<'a>(dirs: &'a [PathBuf], controller: &str) -> Option<&'a Path> {
    dirs.iter().map(PathBuf::as_path).find(|d| {
        let hierarchy = d
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if controller.is_empty() {
            d.starts_with("/sys/fs/cgroup/unified") || d.join("cgroup.controllers").exists()
        } else {
            hierarchy.split(',').any(|c| c == controller)
        }
    })
}

/// Writes `r` into the container's cgroups `dirs` (v2 when the engine cloned into a
/// cgroup2 directory and no v1 hierarchy carries the controllers).
pub(crate) fn apply(
    r: Option<&LinuxResources>,
    devices: &[crate::run::spec::Device],
    dirs: &[PathBuf],
    v2: bool,
) -> Result<(), OciError> {
    let none = LinuxResources::default();
    let r = r.unwrap_or(&none);
    let mut writes = if v2 { v2_writes(r)? } else { v1_writes(r) };
    // The nodes of `linux.devices` are usable (runc allows them as well).
    if !v2 {
        for d in devices {
            let t = match d.kind {
                libc::S_IFBLK => 'b',
                libc::S_IFCHR => 'c',
                _ => continue,
            };
            writes.push((
                "devices",
                "devices.allow".into(),
                format!("{t} {}:{} rwm", d.major, d.minor),
            ));
        }
    }
    for (c, file, value) in writes {
        let dir = dir_for(dirs, c).ok_or_else(|| {
            unsupported(
                if c.is_empty() { "unified" } else { c },
                &format!("the {c} controller is not available on this host"),
            )
        })?;
        let path = dir.join(&file);
        fs::write(&path, &value).map_err(|e| OciError::Unsupported {
            field: "linux.resources".into(),
            why: format!("write {value:?} to {}: {e}", path.display()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v1_files_in_order() {
        let r = res(
            r#"{"memory":{"limit":1000,"swap":2000},"cpu":{"shares":512,"quota":5000,"period":10000},
               "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":229,"access":"rw"}]}"#,
        );
        let w: Vec<String> = v1_writes(&r)
            .into_iter()
            .map(|(c, f, v)| format!("{c} {f}={v}"))
            .filter(|l| !l.contains("devices.") || l.contains("10:229"))
            .collect();
        assert_eq!(
            w,
            [
                "memory memory.limit_in_bytes=1000",
                "memory memory.memsw.limit_in_bytes=2000",
                "cpu cpu.shares=512",
                "cpu cpu.cfs_period_us=10000",
                "cpu cpu.cfs_quota_us=5000",
                "devices devices.allow=c 10:229 rw",
            ]
        );
    }

    #[test]
    fn v2_conversions() {
        let r = res(
            r#"{"memory":{"limit":1000,"swap":3000},"cpu":{"shares":1024,"quota":5000,"period":10000}}"#,
        );
        let w: Vec<String> = v2_writes(&r)
            .unwrap()
            .into_iter()
            .map(|(_, f, v)| format!("{f}={v}"))
            .collect();
        assert_eq!(
            w,
            [
                "memory.max=1000",
                "memory.swap.max=2000",
                "cpu.weight=39",
                "cpu.max=5000 10000"
            ]
        );
        assert!(v2_writes(&res(r#"{"network":{"classID":1}}"#)).is_err());
    }

    #[test]
    fn controller_dirs() {
        let dirs = vec![
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x"),
            PathBuf::from("/sys/fs/cgroup/memory/x"),
        ];
        assert_eq!(
            dir_for(&dirs, "cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/x")
        );
        assert_eq!(
            dir_for(&dirs, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/x")
        );
        assert!(dir_for(&dirs, "hugetlb").is_none());
    }
}
