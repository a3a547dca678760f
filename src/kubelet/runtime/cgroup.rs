//! Pod-level cgroups under the kubepods hierarchy: created before a pod's first container,
//! with the pod's summed limits, and removed after its last container is gone. Container
//! cgroups below them are libcontainer's (from each spec's `cgroupsPath`).
//!
//! Written directly to cgroupfs: v1 (one directory per controller, as on this host) or v2
//! (one unified tree) when `/sys/fs/cgroup/cgroup.controllers` exists.

use std::path::{Path, PathBuf};

use super::RuntimeError;
use crate::kubelet::spec::{pod_cgroup_path, PodResources, QosClass};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a pod cgroup is made in (libcontainer makes the rest per container).
const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "pids"];

fn err(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Cgroup { path: path.display().to_string(), message: e.to_string() }
}

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(|e| err(path, e))
}

fn is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// Creates (or updates) the pod's cgroup with its limits.
pub async fn ensure_pod_cgroup(qos: QosClass, uid: &str, resources: &PodResources) -> Result<(), RuntimeError> {
    ensure_pod_cgroup_at(Path::new(CGROUP_ROOT), &pod_cgroup_path(qos, uid), resources)
}

/// Removes the pod's cgroup (its containers must be gone).
pub async fn remove_pod_cgroup(qos: QosClass, uid: &str) -> Result<(), RuntimeError> {
    remove_cgroup_at(Path::new(CGROUP_ROOT), &pod_cgroup_path(qos, uid))
}

/// [`ensure_pod_cgroup`] for any cgroup path under `root`.
pub fn ensure_pod_cgroup_at(root: &Path, path: &str, r: &PodResources) -> Result<(), RuntimeError> {
    let rel = path.trim_start_matches('/');
    if is_v2(root) {
        // Controllers must be enabled in every ancestor's subtree_control.
        let mut dir = root.to_path_buf();
        for part in Path::new(rel).components() {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
            dir.push(part);
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        }
        if let Some(m) = r.memory_limit {
            write(&dir.join("memory.max"), &m.to_string())?;
        }
        if let Some(q) = r.cpu_quota {
            write(&dir.join("cpu.max"), &format!("{q} {}", r.cpu_period.unwrap_or(100_000)))?;
        }
        if let Some(s) = r.cpu_shares {
            // The kubelet's shares → weight conversion.
            let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(&dir.join("cpu.weight"), &weight.to_string())?;
        }
        return Ok(());
    }
    for c in V1_CONTROLLERS {
        let base = root.join(c);
        if !base.exists() {
            continue;
        }
        let dir = base.join(rel);
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        match *c {
            "memory" => {
                if let Some(m) = r.memory_limit {
                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                }
            }
            "cpu" => {
                if let Some(s) = r.cpu_shares {
                    write(&dir.join("cpu.shares"), &s.to_string())?;
                }
                if let Some(q) = r.cpu_quota {
                    write(&dir.join("cpu.cfs_period_us"), &r.cpu_period.unwrap_or(100_000).to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes a cgroup in every hierarchy it exists in; children first.
pub fn remove_cgroup_at(root: &Path, path: &str) -> Result<(), RuntimeError> {
    let rel = path.trim_start_matches('/');
    let dirs: Vec<PathBuf> = if is_v2(root) {
        vec![root.join(rel)]
    } else {
        std::fs::read_dir(root)
            .map_err(|e| err(root, e))?
            .flatten()
            .filter(|e| !e.path().is_symlink())
            .map(|e| e.path().join(rel))
            .collect()
    };
    for d in dirs {
        rmdir_tree(&d)?;
    }
    Ok(())
}

fn rmdir_tree(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(dir, e)),
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(dir, e)),
    }
}
