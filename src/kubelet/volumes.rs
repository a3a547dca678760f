//! A pod's volumes on the node: emptyDir (a directory, or tmpfs for `medium: Memory`),
//! hostPath (with upstream's type checks), configMap and secret (files written atomically
//! the way upstream's atomic writer does — a timestamped directory behind a `..data` symlink
//! — so a refresh swaps the whole set at once and running containers see it), downwardAPI,
//! and projected volumes of configMaps, secrets, downward API items and service-account
//! tokens (the API access volume every pod gets).
//!
//! Paths: `<pods>/<uid>/volumes/kubernetes.io~<plugin>/<volume>`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};

use crate::domain::quantity::Quantity;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    /// The pod names a ConfigMap or Secret that does not exist (and is not optional).
    #[error("{kind} \"{name}\" not found")]
    Missing { kind: &'static str, name: String },
    #[error("configmap references non-existent config key: {key}")]
    MissingKey { key: String },
    #[error("hostPath type check failed: {path} is not a {want}")]
    HostPathType { path: String, want: &'static str },
    #[error("cannot prepare volume {volume:?} at {path}: {reason}")]
    Io { volume: String, path: String, reason: String },
    #[error("volume {volume:?}: type not supported by this kubelet yet")]
    Unsupported { volume: String },
    /// No service-account token could be had for a projected volume.
    #[error("failed to fetch token for volume {volume:?} (audience {audience:?})")]
    Token { volume: String, audience: String },
    #[error("downward API volume {volume:?}: {reason}")]
    Downward { volume: String, reason: String },
}

fn io(volume: &str, path: &Path, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Io { volume: volume.to_string(), path: path.display().to_string(), reason: e.to_string() }
}

/// The ConfigMaps and Secrets a pod refers to (volumes, env, envFrom), by name.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let add = |list: &mut Vec<String>, n: Option<&str>| {
        if let Some(n) = n.filter(|n| !n.is_empty()) {
            if !list.iter().any(|x| x == n) {
                list.push(n.to_string());
            }
        }
    };
    let Some(spec) = pod.spec.as_ref() else { return (cms, secrets) };
    for v in spec.volumes.iter().flatten() {
        add(&mut cms, v.config_map.as_ref().map(|c| c.name.as_str()));
        add(&mut secrets, v.secret.as_ref().and_then(|s| s.secret_name.as_deref()));
        for s in v.projected.as_ref().and_then(|p| p.sources.as_ref()).into_iter().flatten() {
            add(&mut cms, s.config_map.as_ref().map(|c| c.name.as_str()));
            add(&mut secrets, s.secret.as_ref().map(|c| c.name.as_str()));
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        add(&mut secrets, Some(s.name.as_str()));
    }
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for e in c.env.iter().flatten() {
            let from = e.value_from.as_ref();
            add(&mut cms, from.and_then(|f| f.config_map_key_ref.as_ref()).map(|r| r.name.as_str()));
            add(&mut secrets, from.and_then(|f| f.secret_key_ref.as_ref()).map(|r| r.name.as_str()));
        }
        for e in c.env_from.iter().flatten() {
            add(&mut cms, e.config_map_ref.as_ref().map(|r| r.name.as_str()));
            add(&mut secrets, e.secret_ref.as_ref().map(|r| r.name.as_str()));
        }
    }
    (cms, secrets)
}

/// A service-account token that a projected volume asks for: its audience (empty: the API
/// server's own) and its lifetime in seconds.
pub type TokenKey = (String, i64);

/// The tokens the pod's projected volumes ask for, each once.
pub fn token_requests(pod: &Pod) -> Vec<TokenKey> {
    let mut out: Vec<TokenKey> = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        for s in v.projected.as_ref().and_then(|p| p.sources.as_ref()).into_iter().flatten() {
            if let Some(t) = &s.service_account_token {
                let key = (t.audience.clone().unwrap_or_default(), t.expiration_seconds.unwrap_or(3600));
                if !out.contains(&key) {
                    out.push(key);
                }
            }
        }
    }
    out
}

/// ConfigMaps and Secrets fetched for a pod (a name absent here does not exist), and the
/// service-account tokens its projected volumes ask for.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub tokens: BTreeMap<TokenKey, String>,
}

impl Sources {
    /// A ConfigMap's data and binaryData as bytes.
    pub fn config_map_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let cm = self.config_maps.get(name)?;
        let mut out = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            out.insert(k.clone(), v.as_bytes().to_vec());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        Some(out)
    }

    /// A Secret's data (decoded) and stringData.
    pub fn secret_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let s = self.secrets.get(name)?;
        let mut out = BTreeMap::new();
        for (k, v) in s.data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        for (k, v) in s.string_data.iter().flatten() {
            out.insert(k.clone(), v.as_bytes().to_vec());
        }
        Some(out)
    }
}

/// The directory of one of the pod's volumes.
pub fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(format!("kubernetes.io~{plugin}")).join(name)
}

/// Prepares (or refreshes) every volume of the pod; returns volume name → host path.
/// `mounts` performs tmpfs mounts (behind a trait so unit tests run unprivileged).
pub fn prepare(
    pod_dir: &Path,
    pod: &Pod,
    sources: &Sources,
    mounts: &dyn Mounter,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let name = v.name.as_str();
        let path = if let Some(ed) = &v.empty_dir {
            let dir = volume_dir(pod_dir, "empty-dir", name);
            fs::create_dir_all(&dir).map_err(|e| io(name, &dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).map_err(|e| io(name, &dir, e))?;
            if ed.medium.as_deref() == Some("Memory") {
                let size = ed.size_limit.as_ref().and_then(|q| quantity_bytes(&q.0));
                mounts.tmpfs(&dir, size).map_err(|e| io(name, &dir, e))?;
            }
            dir
        } else if let Some(hp) = &v.host_path {
            host_path(name, hp)?
        } else if let Some(cm) = &v.config_map {
            let data = sources.config_map_data(&cm.name);
            let mode = mode_or(cm.default_mode, 0o644);
            let files = keyed_files("configmap", &cm.name, data, cm.items.as_deref(), mode, cm.optional)?;
            let dir = volume_dir(pod_dir, "configmap", name);
            write_atomic(&dir, &files).map_err(|e| io(name, &dir, e))?;
            dir
        } else if let Some(sec) = &v.secret {
            let s_name = sec.secret_name.as_deref().unwrap_or("");
            let mode = mode_or(sec.default_mode, 0o644);
            let files =
                keyed_files("secret", s_name, sources.secret_data(s_name), sec.items.as_deref(), mode, sec.optional)?;
            let dir = in_memory_dir(name, volume_dir(pod_dir, "secret", name), mounts)?;
            write_atomic(&dir, &files).map_err(|e| io(name, &dir, e))?;
            dir
        } else if let Some(p) = &v.projected {
            let dir = in_memory_dir(name, volume_dir(pod_dir, "projected", name), mounts)?;
            let files = projected(name, pod, p, sources)?;
            write_atomic(&dir, &files).map_err(|e| io(name, &dir, e))?;
            dir
        } else if let Some(d) = &v.downward_api {
            let dir = volume_dir(pod_dir, "downward-api", name);
            let files = downward(name, pod, d.items.as_deref().unwrap_or_default(), mode_or(d.default_mode, 0o644))?;
            write_atomic(&dir, &files).map_err(|e| io(name, &dir, e))?;
            dir
        } else {
            return Err(VolumeError::Unsupported { volume: name.to_string() });
        };
        out.insert(name.to_string(), path);
    }
    Ok(out)
}

/// A volume directory on tmpfs: secrets and tokens never touch the disk, as upstream.
fn in_memory_dir(volume: &str, dir: PathBuf, mounts: &dyn Mounter) -> Result<PathBuf, VolumeError> {
    fs::create_dir_all(&dir).map_err(|e| io(volume, &dir, e))?;
    mounts.tmpfs(&dir, None).map_err(|e| io(volume, &dir, e))?;
    Ok(dir)
}

/// The files of a ConfigMap or Secret (`kind` `name`, whose data is `data` when it exists):
/// all its keys or only `items`. A missing one is an error unless `optional`, then no files.
fn keyed_files(
    kind: &'static str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let optional = optional.unwrap_or(false);
    match data {
        Some(d) => project(&d, items, default_mode, optional),
        None if optional => Ok(Vec::new()),
        None => Err(VolumeError::Missing { kind, name: name.to_string() }),
    }
}

fn mode_or(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default)
}

/// The files of a projected volume: each source's in order (a later file of the same path
/// wins, as upstream writes them), all with the volume's default mode unless an item says.
fn projected(
    volume: &str,
    pod: &Pod,
    p: &ProjectedVolumeSource,
    sources: &Sources,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let default_mode = mode_or(p.default_mode, 0o644);
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for s in p.sources.iter().flatten() {
        if let Some(cm) = &s.config_map {
            let data = sources.config_map_data(&cm.name);
            files.extend(keyed_files("configmap", &cm.name, data, cm.items.as_deref(), default_mode, cm.optional)?);
        } else if let Some(sec) = &s.secret {
            let data = sources.secret_data(&sec.name);
            files.extend(keyed_files("secret", &sec.name, data, sec.items.as_deref(), default_mode, sec.optional)?);
        } else if let Some(d) = &s.downward_api {
            files.extend(downward(volume, pod, d.items.as_deref().unwrap_or_default(), default_mode)?);
        } else if let Some(t) = &s.service_account_token {
            let key = (t.audience.clone().unwrap_or_default(), t.expiration_seconds.unwrap_or(3600));
            let token = sources
                .tokens
                .get(&key)
                .ok_or_else(|| VolumeError::Token { volume: volume.to_string(), audience: key.0.clone() })?;
            files.push((t.path.clone(), token.clone().into_bytes(), default_mode));
        } else {
            return Err(VolumeError::Unsupported { volume: volume.to_string() });
        }
    }
    // One file per path: the last source that wrote it.
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<_> = files.into_iter().rev().filter(|(path, _, _)| seen.insert(path.clone())).collect();
    out.reverse();
    Ok(out)
}

/// The files of downward API items: the pod's metadata, or a container's resources.
fn downward(
    volume: &str,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            super::spec::metadata_field(&pod.metadata, &f.field_path).ok_or_else(|| VolumeError::Downward {
                volume: volume.to_string(),
                reason: format!("unsupported fieldPath: {}", f.field_path),
            })?
        } else if let Some(r) = &item.resource_field_ref {
            super::spec::resource_field(pod, None, r, &BTreeMap::new())
                .map_err(|e| VolumeError::Downward { volume: volume.to_string(), reason: e.to_string() })?
        } else {
            continue;
        };
        out.push((item.path.clone(), value.into_bytes(), mode_or(item.mode, default_mode)));
    }
    Ok(out)
}

/// Removes the pod's volume directories (unmounting tmpfs ones first).
pub fn cleanup(pod_dir: &Path, mounts: &dyn Mounter) -> Result<(), VolumeError> {
    let vols = pod_dir.join("volumes");
    for plugin in fs::read_dir(&vols).into_iter().flatten().flatten() {
        for v in fs::read_dir(plugin.path()).into_iter().flatten().flatten() {
            let _ = mounts.unmount(&v.path());
        }
    }
    match fs::remove_dir_all(pod_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("", pod_dir, e)),
    }
}

/// A quantity in bytes (`128Mi`, `1G`, `1e9`, `1P`), rounded up as upstream's `Value`;
/// `None` for what is not a quantity or is negative.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q: Quantity = q.trim().parse().ok()?;
    u64::try_from(q.value()).ok()
}

fn host_path(name: &str, hp: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&hp.path);
    let p = path.display().to_string();
    let meta = fs::metadata(&path);
    match hp.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" => {
            if meta.is_err() {
                fs::create_dir_all(&path).map_err(|e| io(name, &path, e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| io(name, &path, e))?;
            } else if !path.is_dir() {
                return Err(VolumeError::HostPathType { path: p, want: "directory" });
            }
        }
        "Directory" if !path.is_dir() => return Err(VolumeError::HostPathType { path: p, want: "directory" }),
        "FileOrCreate" => {
            if meta.is_err() {
                fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(name, &path, e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(|e| io(name, &path, e))?;
            } else if !path.is_file() {
                return Err(VolumeError::HostPathType { path: p, want: "file" });
            }
        }
        "File" if !path.is_file() => return Err(VolumeError::HostPathType { path: p, want: "file" }),
        "Socket" => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.map(|m| m.file_type().is_socket()).unwrap_or(false) {
                return Err(VolumeError::HostPathType { path: p, want: "socket" });
            }
        }
        _ => {}
    }
    Ok(path)
}

/// The files of a configMap/secret volume: all keys, or only `items` (key → path, mode).
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let mut out = Vec::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let key = it.key.as_str();
                let path = if it.path.is_empty() { key } else { it.path.as_str() };
                let mode = it.mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default_mode);
                match data.get(key) {
                    Some(v) => out.push((path.to_string(), v.clone(), mode)),
                    None if optional => {}
                    None => return Err(VolumeError::MissingKey { key: key.to_string() }),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.push((k.clone(), v.clone(), default_mode));
            }
        }
    }
    Ok(out)
}

/// Writes `files` under `dir` as a timestamped directory behind `..data`, with one symlink
/// per top-level name; unchanged content is left alone. A reader never sees a mix of old
/// and new files.
pub fn write_atomic(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(cur) = fs::read_link(&data_link) {
        if same_content(&dir.join(&cur), files) {
            return Ok(());
        }
    }
    let stamp = time::OffsetDateTime::now_utc();
    let ts = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second(),
        stamp.nanosecond()
    );
    let ts_dir = dir.join(&ts);
    fs::create_dir_all(&ts_dir)?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))?;
    for (path, content, mode) in files {
        let rel = Path::new(path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            continue;
        }
        let target = ts_dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::File::create(&target)?;
        f.write_all(content)?;
        f.set_permissions(fs::Permissions::from_mode(*mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&ts, &tmp_link)?;
    let old = fs::read_link(&data_link).ok();
    fs::rename(&tmp_link, &data_link)?;
    // User-visible names point through ..data.
    let mut tops: Vec<String> = files
        .iter()
        .filter_map(|(p, _, _)| Path::new(p).components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    tops.sort();
    tops.dedup();
    for t in &tops {
        let link = dir.join(t);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(t), &link)?;
        }
    }
    // Names that are gone.
    for e in fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !tops.contains(&n) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts) {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

fn same_content(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> bool {
    let count = walk_files(dir);
    count == files.len()
        && files.iter().all(|(p, content, mode)| {
            let f = dir.join(p);
            fs::read(&f).ok().as_ref() == Some(content)
                && fs::metadata(&f).map(|m| m.permissions().mode() & 0o7777 == *mode).unwrap_or(false)
        })
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk_files(&p);
        } else {
            n += 1;
        }
    }
    n
}

/// Mounting, behind a trait so the volume logic is testable without privileges.
pub trait Mounter: Send + Sync {
    /// Mounts a tmpfs at `dir` unless one is there already.
    fn tmpfs(&self, dir: &Path, size: Option<u64>) -> std::io::Result<()>;
    /// Unmounts `dir` if something is mounted there.
    fn unmount(&self, dir: &Path) -> std::io::Result<()>;
}

/// The real mounter.
pub struct SysMounter;

fn is_mountpoint(dir: &Path) -> bool {
    crate::util::mountinfo::is_mount_root(dir).unwrap_or(false)
}

impl Mounter for SysMounter {
    fn tmpfs(&self, dir: &Path, size: Option<u64>) -> std::io::Result<()> {
        if is_mountpoint(dir) {
            return Ok(());
        }
        let data = match size {
            Some(s) => format!("mode=0777,size={s}"),
            None => "mode=0777".to_string(),
        };
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(std::io::Error::from)
    }
    fn unmount(&self, dir: &Path) -> std::io::Result<()> {
        if !is_mountpoint(dir) {
            return Ok(());
        }
        nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Volume;
    use serde_json::json;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeMounts(Mutex<Vec<String>>);
    impl Mounter for FakeMounts {
        fn tmpfs(&self, dir: &Path, _size: Option<u64>) -> std::io::Result<()> {
            self.0.lock().unwrap().push(format!("tmpfs {}", dir.display()));
            Ok(())
        }
        fn unmount(&self, dir: &Path) -> std::io::Result<()> {
            self.0.lock().unwrap().push(format!("umount {}", dir.display()));
            Ok(())
        }
    }

    /// A pod with these volumes (as their manifest reads), and one container that refers to a
    /// ConfigMap and a Secret through its environment.
    fn pod(vols: serde_json::Value) -> Pod {
        let volumes: Vec<Volume> = serde_json::from_value(vols).expect("volumes");
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"volumes": volumes, "containers": [
            {"name": "a", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "k"}}}],
             "envFrom": [{"secretRef": {"name": "envsec"}}]}]}}),
        )
        .expect("pod")
    }

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn references_come_from_volumes_and_env() {
        let p =
            pod(json!([{"name": "c", "configMap": {"name": "cm"}}, {"name": "s", "secret": {"secretName": "sec"}}]));
        let (cms, secs) = referenced(&p);
        assert_eq!(cms, vec!["cm", "envcm"]);
        assert_eq!(secs, vec!["sec", "envsec"]);
    }

    #[test]
    fn config_map_files_are_written_behind_data_and_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!([{"name": "c", "configMap": {"name": "cm"}}, {"name": "e", "emptyDir": {}}]));
        let mut src = Sources::default();
        src.config_maps.insert("cm".into(), config_map(&[("a.txt", "one"), ("b", "two")]));
        let m = FakeMounts::default();
        let vols = prepare(dir.path(), &p, &src, &m).unwrap();
        let c = &vols["c"];
        assert_eq!(fs::read_to_string(c.join("a.txt")).unwrap(), "one");
        assert_eq!(fs::read_link(c.join("a.txt")).unwrap(), Path::new("..data/a.txt"));
        assert!(vols["e"].is_dir());
        let first = fs::read_link(c.join("..data")).unwrap();
        // Unchanged: nothing rewritten.
        prepare(dir.path(), &p, &src, &m).unwrap();
        assert_eq!(fs::read_link(c.join("..data")).unwrap(), first);
        // Changed: new content, a removed key disappears.
        src.config_maps.insert("cm".into(), config_map(&[("a.txt", "uno")]));
        prepare(dir.path(), &p, &src, &m).unwrap();
        assert_eq!(fs::read_to_string(c.join("a.txt")).unwrap(), "uno");
        assert!(!c.join("b").exists());
        assert!(!c.join(&first).exists(), "the old generation is removed");
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let p = pod(json!([{"name": "c", "configMap": {"name": "nope"}}]));
        assert_eq!(
            prepare(dir.path(), &p, &Sources::default(), &m).unwrap_err().to_string(),
            "configmap \"nope\" not found"
        );
        let p = pod(json!([{"name": "s", "secret": {"secretName": "nope"}}]));
        assert_eq!(
            prepare(dir.path(), &p, &Sources::default(), &m).unwrap_err().to_string(),
            "secret \"nope\" not found"
        );
        let p = pod(json!([{"name": "s", "secret": {"secretName": "nope", "optional": true}}]));
        assert!(prepare(dir.path(), &p, &Sources::default(), &m).is_ok());
    }

    #[test]
    fn secrets_go_on_tmpfs_with_items_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let p = pod(
            json!([{"name": "s", "secret": {"secretName": "sec", "items": [{"key": "pw", "path": "sub/password", "mode": 0o400}]}}]),
        );
        let mut src = Sources::default();
        // As the API sends it: data in base64.
        let sec: Secret = serde_json::from_value(json!({"data": {"pw": "aHVudGVyMg==", "other": "eA=="}})).unwrap();
        src.secrets.insert("sec".into(), sec);
        let vols = prepare(dir.path(), &p, &src, &m).unwrap();
        let f = vols["s"].join("sub/password");
        assert_eq!(fs::read_to_string(&f).unwrap(), "hunter2");
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o400);
        assert!(!vols["s"].join("other").exists());
        assert!(m.0.lock().unwrap()[0].starts_with("tmpfs "));
    }

    /// The API access volume as admission adds it, and a labelled pod.
    fn api_access_pod() -> Pod {
        let mut p = pod(json!([{"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}}, {"name": "info", "downwardAPI": {"defaultMode": 0o600, "items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "a", "resource": "limits.memory", "divisor": "1Mi"}, "mode": 0o644},
        ]}}]));
        p.metadata.labels =
            Some([("app".to_string(), "web".to_string()), ("tier".to_string(), "front".to_string())].into());
        p.spec.as_mut().unwrap().containers[0].resources =
            serde_json::from_value(json!({"limits": {"memory": "64Mi"}})).unwrap();
        p
    }

    #[test]
    fn the_api_access_volume_holds_token_ca_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let p = api_access_pod();
        assert_eq!(token_requests(&p), vec![(String::new(), 3607)]);
        let mut src = Sources::default();
        // No token: the volume cannot be set up (the kubelet reports FailedMount).
        src.config_maps.insert("kube-root-ca.crt".into(), config_map(&[("ca.crt", "PEM")]));
        assert_eq!(
            prepare(dir.path(), &p, &src, &m).unwrap_err(),
            VolumeError::Token { volume: "kube-api-access-x".into(), audience: String::new() }
        );
        src.tokens.insert((String::new(), 3607), "tok1".into());
        let vols = prepare(dir.path(), &p, &src, &m).unwrap();
        let v = &vols["kube-api-access-x"];
        assert!(v.ends_with("volumes/kubernetes.io~projected/kube-api-access-x"));
        assert_eq!(fs::read_to_string(v.join("token")).unwrap(), "tok1");
        assert_eq!(fs::read_to_string(v.join("ca.crt")).unwrap(), "PEM");
        assert_eq!(fs::read_to_string(v.join("namespace")).unwrap(), "d");
        assert_eq!(fs::metadata(v.join("token")).unwrap().permissions().mode() & 0o777, 0o644);
        // On tmpfs (asked again on each set-up: the real mounter mounts once).
        assert!(m.0.lock().unwrap().iter().all(|e| *e == format!("tmpfs {}", v.display())));
        // A renewed token replaces the file in place.
        src.tokens.insert((String::new(), 3607), "tok2".into());
        prepare(dir.path(), &p, &src, &m).unwrap();
        assert_eq!(fs::read_to_string(v.join("token")).unwrap(), "tok2");
        // The missing root CA is an error, as upstream (the ConfigMap is not optional).
        src.config_maps.clear();
        assert_eq!(
            prepare(dir.path(), &p, &src, &m).unwrap_err(),
            VolumeError::Missing { kind: "configmap", name: "kube-root-ca.crt".into() }
        );
    }

    #[test]
    fn downward_api_files_follow_the_pods_labels() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let mut p = api_access_pod();
        let mut src = Sources::default();
        src.config_maps.insert("kube-root-ca.crt".into(), config_map(&[("ca.crt", "PEM")]));
        src.tokens.insert((String::new(), 3607), "t".into());
        let vols = prepare(dir.path(), &p, &src, &m).unwrap();
        let v = &vols["info"];
        assert!(v.ends_with("volumes/kubernetes.io~downward-api/info"));
        assert_eq!(fs::read_to_string(v.join("labels")).unwrap(), "app=\"web\"\ntier=\"front\"");
        assert_eq!(fs::read_to_string(v.join("tier")).unwrap(), "front");
        assert_eq!(fs::read_to_string(v.join("mem")).unwrap(), "64");
        assert_eq!(fs::metadata(v.join("tier")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(v.join("mem")).unwrap().permissions().mode() & 0o777, 0o644);
        p.metadata.labels.as_mut().unwrap().insert("tier".into(), "back".into());
        prepare(dir.path(), &p, &src, &m).unwrap();
        assert_eq!(fs::read_to_string(v.join("tier")).unwrap(), "back");
        // Only metadata may be projected into files.
        let bad = pod(
            json!([{"name": "bad", "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}]),
        );
        assert_eq!(
            prepare(dir.path(), &bad, &src, &m).unwrap_err().to_string(),
            "downward API volume \"bad\": unsupported fieldPath: status.podIP"
        );
    }

    #[test]
    fn projected_sources_combine_and_the_last_writer_of_a_path_wins() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let p = pod(json!([{"name": "all", "projected": {"defaultMode": 0o640, "sources": [
            {"configMap": {"name": "cm"}},
            {"secret": {"name": "sec", "items": [{"key": "pw", "path": "k"}]}},
            {"secret": {"name": "absent", "optional": true}},
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "vault-token"}},
        ]}}]));
        let mut src = Sources::default();
        src.config_maps.insert("cm".into(), config_map(&[("k", "from-cm"), ("other", "o")]));
        let sec: Secret = serde_json::from_value(json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap();
        src.secrets.insert("sec".into(), sec);
        src.tokens.insert(("vault".into(), 600), "vt".into());
        let vols = prepare(dir.path(), &p, &src, &m).unwrap();
        let v = &vols["all"];
        assert_eq!(fs::read_to_string(v.join("k")).unwrap(), "hunter2");
        assert_eq!(fs::read_to_string(v.join("other")).unwrap(), "o");
        assert_eq!(fs::read_to_string(v.join("vault-token")).unwrap(), "vt");
        assert_eq!(fs::metadata(v.join("other")).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounts::default();
        let d = dir.path().join("made");
        let p = pod(json!([{"name": "h", "hostPath": {"path": d, "type": "DirectoryOrCreate"}}]));
        prepare(dir.path(), &p, &Sources::default(), &m).unwrap();
        assert!(d.is_dir());
        let p = pod(json!([{"name": "h", "hostPath": {"path": d, "type": "File"}}]));
        let e = prepare(dir.path(), &p, &Sources::default(), &m).unwrap_err();
        assert!(matches!(e, VolumeError::HostPathType { want: "file", .. }));
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("bogus"), None);
        assert_eq!(quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1P"), Some(1_000_000_000_000_000));
        assert_eq!(quantity_bytes("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(quantity_bytes("1.5"), Some(2));
        assert_eq!(quantity_bytes("-1Mi"), None);
    }
}
