//! Pod-level cgroups under the kubepods hierarchy: created before a pod's first container,
//! with the pod's summed limits, and removed after its last container is gone. Container
//! cgroups below them are libcontainer's (from each spec's `cgroupsPath`).
//!
//! [`PodCgroups`] is what the node backend uses; [`SysCgroups`] is the node's cgroupfs, v1
//! (one directory per controller, as on this host) or v2 (one unified tree). libcgroups tells
//! which it is, where each v1 controller is mounted, and writes the limit files. Its cgroup
//! managers are not used: they make a cgroup only when they move a process into it (a pod
//! cgroup holds none), and a v1 manager applies device rules to every cgroup it touches,
//! which a pod cgroup has no directory for (nor should have: it would cap its containers').

use std::path::{Path, PathBuf};

use libcgroups::common::{write_cgroup_file_str, CgroupSetup};
use libcgroups::v1::ControllerType;

use super::RuntimeError;
use crate::domain::pod::QosClass;
use crate::kubelet::spec::{pod_cgroup_path, PodResources};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a pod cgroup is made in (libcontainer makes the rest per container).
const V1_CONTROLLERS: [ControllerType; 3] = [ControllerType::Memory, ControllerType::Cpu, ControllerType::Pids];
/// The CFS period a quota is measured against when the pod names none.
const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Pod cgroups, by their path below each hierarchy's root (`/kubepods/burstable/pod<uid>`).
pub trait PodCgroups: Send + Sync {
    /// Creates the cgroup (or updates it) with the pod's limits.
    fn ensure(&self, path: &str, resources: &PodResources) -> Result<(), RuntimeError>;
    /// Removes the cgroup and what is below it in every hierarchy; nothing there is fine.
    fn remove(&self, path: &str) -> Result<(), RuntimeError>;
}

/// The node's cgroupfs at `/sys/fs/cgroup`.
pub struct SysCgroups;

fn err(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Cgroup { path: path.display().to_string(), message: e.to_string() }
}

fn is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// The kubelet's CPU shares → cgroup v2 weight conversion.
fn cpu_weight(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// The limit files of a pod cgroup and what goes into them, in the order they are written:
/// for v1 with the controller whose directory holds each file.
fn limit_files(r: &PodResources, v2: bool) -> Vec<(ControllerType, &'static str, String)> {
    let mut out = Vec::new();
    let period = r.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
    if v2 {
        if let Some(m) = r.memory_limit {
            out.push((ControllerType::Memory, "memory.max", m.to_string()));
        }
        if let Some(q) = r.cpu_quota {
            out.push((ControllerType::Cpu, "cpu.max", format!("{q} {period}")));
        }
        if let Some(s) = r.cpu_shares {
            out.push((ControllerType::Cpu, "cpu.weight", cpu_weight(s).to_string()));
        }
        return out;
    }
    if let Some(m) = r.memory_limit {
        out.push((ControllerType::Memory, "memory.limit_in_bytes", m.to_string()));
    }
    if let Some(s) = r.cpu_shares {
        out.push((ControllerType::Cpu, "cpu.shares", s.to_string()));
    }
    if let Some(q) = r.cpu_quota {
        out.push((ControllerType::Cpu, "cpu.cfs_period_us", period.to_string()));
        out.push((ControllerType::Cpu, "cpu.cfs_quota_us", q.to_string()));
    }
    out
}

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    write_cgroup_file_str(path, value).map_err(|e| err(path, e))
}

impl PodCgroups for SysCgroups {
    fn ensure(&self, path: &str, r: &PodResources) -> Result<(), RuntimeError> {
        let root = Path::new(CGROUP_ROOT);
        let rel = path.trim_start_matches('/');
        let setup = libcgroups::common::get_cgroup_setup_with_root(root).map_err(|e| err(root, e))?;
        if matches!(setup, CgroupSetup::Unified) {
            // Controllers must be enabled in every ancestor's subtree_control.
            let mut dir = root.to_path_buf();
            for part in Path::new(rel).components() {
                let _ = write_cgroup_file_str(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
                dir.push(part);
                std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
            }
            for (_, file, value) in limit_files(r, true) {
                write(&dir.join(file), &value)?;
            }
            return Ok(());
        }
        let files = limit_files(r, false);
        for c in V1_CONTROLLERS {
            // A controller that is not mounted is not there to limit.
            let Ok(base) = libcgroups::v1::util::get_subsystem_mount_point(&c) else { continue };
            let dir = base.join(rel);
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
            for (_, file, value) in files.iter().filter(|(of, _, _)| *of == c) {
                write(&dir.join(file), value)?;
            }
        }
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), RuntimeError> {
        remove_cgroup_at(Path::new(CGROUP_ROOT), path)
    }
}

/// Creates (or updates) the pod's cgroup with its limits.
pub async fn ensure_pod_cgroup(
    cgroups: &dyn PodCgroups,
    qos: QosClass,
    uid: &str,
    resources: &PodResources,
) -> Result<(), RuntimeError> {
    cgroups.ensure(&pod_cgroup_path(qos, uid), resources)
}

/// Removes the pod's cgroup whatever its QoS class was (its containers must be gone).
pub async fn remove_pod_cgroup(cgroups: &dyn PodCgroups, uid: &str) {
    for qos in [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort] {
        if let Err(e) = cgroups.remove(&pod_cgroup_path(qos, uid)) {
            tracing::debug!(pod_uid = uid, error = %e, "removing a pod cgroup failed");
        }
    }
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

/// Pod cgroups kept in memory, for tests: path → the limits last ensured.
#[cfg(test)]
#[derive(Default)]
pub struct FakeCgroups {
    pub cgroups: std::sync::Mutex<std::collections::BTreeMap<String, PodResources>>,
}

#[cfg(test)]
impl PodCgroups for FakeCgroups {
    fn ensure(&self, path: &str, resources: &PodResources) -> Result<(), RuntimeError> {
        self.cgroups.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string(), resources.clone());
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), RuntimeError> {
        let below = format!("{path}/");
        self.cgroups.lock().unwrap_or_else(|p| p.into_inner()).retain(|p, _| p != path && !p.starts_with(&below));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_limits_are_shares_then_the_quota_with_its_period_and_memory() {
        let r = PodResources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: None,
            memory_limit: Some(64 << 20),
        };
        let files = limit_files(&r, false);
        let named: Vec<(&str, &str)> = files.iter().map(|(_, f, v)| (*f, v.as_str())).collect();
        assert_eq!(
            named,
            [
                ("memory.limit_in_bytes", "67108864"),
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000")
            ]
        );
        assert_eq!(files[0].0, ControllerType::Memory);
        assert!(files[1..].iter().all(|(c, _, _)| *c == ControllerType::Cpu));
        assert!(limit_files(&PodResources::default(), false).is_empty());
    }

    #[test]
    fn v2_limits_use_the_kubelets_weight_for_the_shares() {
        let r = PodResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(20_000),
            cpu_period: Some(50_000),
            memory_limit: Some(1 << 30),
        };
        let named: Vec<(&str, String)> = limit_files(&r, true).into_iter().map(|(_, f, v)| (f, v)).collect();
        assert_eq!(
            named,
            [
                ("memory.max", "1073741824".to_string()),
                ("cpu.max", "20000 50000".to_string()),
                ("cpu.weight", "39".to_string())
            ]
        );
        assert_eq!((cpu_weight(2), cpu_weight(262_144), cpu_weight(1)), (1, 10_000, 1));
    }

    #[tokio::test]
    async fn a_pod_cgroup_is_removed_whatever_its_qos_class() {
        let fake = FakeCgroups::default();
        let r = PodResources { cpu_shares: Some(2), cpu_quota: None, cpu_period: None, memory_limit: None };
        ensure_pod_cgroup(&fake, QosClass::BestEffort, "u1", &r).await.unwrap();
        ensure_pod_cgroup(&fake, QosClass::Burstable, "u2", &r).await.unwrap();
        assert_eq!(fake.cgroups.lock().unwrap().len(), 2);
        remove_pod_cgroup(&fake, "u1").await;
        let left: Vec<String> = fake.cgroups.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, [pod_cgroup_path(QosClass::Burstable, "u2")]);
    }
}
