//! Pod volumes on the node: `emptyDir` (a directory of the pod, or tmpfs for
//! `medium: Memory`), `hostPath` (with Kubernetes' type checks and creation), and `configMap` and
//! `secret` volumes projected the kubelet's way (files in a timestamped directory, a `..data`
//! symlink swapped atomically by rename, the visible names symlinks through `..data`), secrets
//! on a tmpfs of their own so their content never reaches the disk. A changed ConfigMap or
//! Secret updates a running pod's files with the same swap. `subPath` resolves inside the
//! volume without following a symlink out of it.
//!
//! `project` and `mounts_for` are pure; the rest does the I/O.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use flotilla_shared::api::{Container, HostPathType, KeyToPath, PodSpec, Volume};
use flotilla_shared::wire::{ClaimVolume, ConfigData};

use super::spec::BindMount;

/// Why a pod's volumes could not be prepared. `Config` errors are the user's (a missing
/// ConfigMap, key or Secret: the kubelet's `CreateContainerConfigError`); `Mount` errors are
/// the node's or the host path's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Mount(String),
}

/// Default file mode of projected files.
const DEFAULT_MODE: u32 = 0o644;

/// One file of a projected volume: path relative to the volume, content, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A ConfigMap or Secret volume's source, either kind.
#[derive(Debug, Clone, Copy)]
pub struct ProjectionSource<'a> {
    /// `configmap` or `secret`, as the kubelet's messages say.
    pub kind: &'a str,
    pub name: &'a str,
    pub items: Option<&'a [KeyToPath]>,
    pub default_mode: Option<i32>,
    pub optional: bool,
}

impl<'a> ProjectionSource<'a> {
    pub fn of(v: &'a Volume) -> Option<Self> {
        if let Some(c) = &v.config_map {
            return Some(ProjectionSource {
                kind: "configmap",
                name: &c.name,
                items: c.items.as_deref(),
                default_mode: c.default_mode,
                optional: c.optional == Some(true),
            });
        }
        v.secret.as_ref().map(|s| ProjectionSource {
            kind: "secret",
            name: &s.secret_name,
            items: s.items.as_deref(),
            default_mode: s.default_mode,
            optional: s.optional == Some(true),
        })
    }

    /// The object this volume reads, among those of the pod's namespace.
    pub fn find<'d>(
        &self,
        namespace: &str,
        cms: &'d [ConfigData],
        secrets: &'d [ConfigData],
    ) -> Option<&'d ConfigData> {
        let pool = if self.kind == "secret" { secrets } else { cms };
        pool.iter().find(|c| c.namespace == namespace && c.name == self.name)
    }
}

/// Pure: the files of a ConfigMap or Secret volume, as the kubelet projects them: every key,
/// or only `items` (each key must exist unless the volume is optional), with `mode`, else
/// `defaultMode`, else 0644.
pub fn project(src: &ProjectionSource, data: Option<&ConfigData>) -> Result<Vec<ProjectedFile>, VolumeError> {
    let Some(data) = data else {
        if src.optional {
            return Ok(Vec::new());
        }
        return Err(VolumeError::Config(format!("{} {:?} not found", src.kind, src.name)));
    };
    let default_mode = src.default_mode.map_or(DEFAULT_MODE, |m| m as u32 & 0o777);
    let mut out = Vec::new();
    match src.items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some(bytes) = data.data.get(&item.key) else {
                    if src.optional {
                        continue;
                    }
                    let what = if src.kind == "secret" { "secret" } else { "config" };
                    return Err(VolumeError::Config(format!(
                        "{} {:?} references non-existent {what} key: {}",
                        src.kind, src.name, item.key
                    )));
                };
                check_relative(&item.path).map_err(VolumeError::Config)?;
                out.push(ProjectedFile {
                    path: item.path.clone(),
                    data: bytes.0.clone(),
                    mode: item.mode.map_or(default_mode, |m| m as u32 & 0o777),
                });
            }
        }
        _ => {
            for (key, bytes) in &data.data {
                check_relative(key).map_err(VolumeError::Config)?;
                out.push(ProjectedFile { path: key.clone(), data: bytes.0.clone(), mode: default_mode });
            }
        }
    }
    Ok(out)
}

/// A relative path with no `..`, no empty or `.` parts and nothing starting with `..` (the
/// projection's own names).
fn check_relative(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && !p.starts_with("..")
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !p.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if ok {
        Ok(())
    } else {
        Err(format!("invalid path {p:?}: must be relative, without '..'"))
    }
}

/// Where the pod's volumes live on the node.
pub struct PodVolumes {
    /// `<pod dir>/volumes`: one directory (or mount point) per volume.
    pub root: PathBuf,
    /// `<pod dir>/volume-versions`: what each projected volume last showed.
    pub versions: PathBuf,
}

impl PodVolumes {
    pub fn new(pod_dir: &Path) -> Self {
        PodVolumes { root: pod_dir.join("volumes"), versions: pod_dir.join("volume-versions") }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Makes every volume of the pod ready (idempotent): returns each volume's host path.
    pub fn prepare(
        &self,
        spec: &PodSpec,
        namespace: &str,
        cms: &[ConfigData],
        secrets: &[ConfigData],
        claims: &[ClaimVolume],
    ) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let mount_err = |e: anyhow::Error| VolumeError::Mount(format!("{e:#}"));
        let fs_group =
            spec.security_context.as_ref().and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok());
        std::fs::create_dir_all(&self.root).map_err(|e| VolumeError::Mount(e.to_string()))?;
        let mut out = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let path = if let Some(e) = &v.empty_dir {
                let dir = self.dir(&v.name);
                if e.medium.as_deref() == Some("Memory") {
                    let size = e
                        .size_limit
                        .as_ref()
                        .and_then(|q| q.value().ok())
                        .and_then(|b| u64::try_from(b).ok())
                        .filter(|b| *b > 0);
                    mount_tmpfs(&dir, size, 0o777).map_err(mount_err)?;
                } else if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| VolumeError::Mount(e.to_string()))?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                        .map_err(|e| VolumeError::Mount(e.to_string()))?;
                }
                set_fs_group(&dir, fs_group).map_err(mount_err)?;
                dir
            } else if let Some(h) = &v.host_path {
                host_path(Path::new(&h.path), h.type_.unwrap_or(HostPathType::Unset)).map_err(mount_err)?;
                PathBuf::from(&h.path)
            } else if let Some(src) = ProjectionSource::of(v) {
                let files = project(&src, src.find(namespace, cms, secrets))?;
                let dir = self.dir(&v.name);
                if src.kind == "secret" {
                    // Secrets live in memory only. Sized for Kubernetes' 1 MiB objects, items
                    // repeating keys, and a swap's two copies.
                    mount_tmpfs(&dir, Some(16 << 20), 0o755).map_err(mount_err)?;
                } else {
                    std::fs::create_dir_all(&dir).map_err(|e| VolumeError::Mount(e.to_string()))?;
                }
                let version = version_of(v, src.find(namespace, cms, secrets));
                self.write_projection(&v.name, &dir, &files, &version, fs_group).map_err(mount_err)?;
                dir
            } else if let Some(c) = &v.persistent_volume_claim {
                // Bound by the hub (or, standalone, from the manifest directory) to a local or
                // hostPath PersistentVolume on this node.
                let Some(bound) = claims.iter().find(|b| b.namespace == namespace && b.claim == c.claim_name)
                else {
                    return Err(VolumeError::Config(format!(
                        "persistentvolumeclaim {:?} is not bound to a volume on this node",
                        c.claim_name
                    )));
                };
                let h = &bound.host_path;
                host_path(Path::new(&h.path), h.type_.unwrap_or(HostPathType::Unset))
                    .map_err(|e| VolumeError::Mount(format!("persistentvolume {:?}: {e:#}", bound.volume)))?;
                if !Path::new(&h.path).exists() {
                    return Err(VolumeError::Mount(format!(
                        "persistentvolume {:?}: path {:?} does not exist",
                        bound.volume, h.path
                    )));
                }
                PathBuf::from(&h.path)
            } else {
                return Err(VolumeError::Config(format!("volume {:?} has no supported source", v.name)));
            };
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    /// Rewrites the projected volumes whose ConfigMap or Secret changed (called for running
    /// pods when the node's ConfigMaps or Secrets change). Returns the volumes it updated.
    pub fn refresh(
        &self,
        spec: &PodSpec,
        namespace: &str,
        cms: &[ConfigData],
        secrets: &[ConfigData],
    ) -> Vec<String> {
        let fs_group =
            spec.security_context.as_ref().and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok());
        let mut updated = Vec::new();
        for v in spec.volumes.iter().flatten() {
            let Some(src) = ProjectionSource::of(v) else { continue };
            let dir = self.dir(&v.name);
            if !dir.join("..data").exists() && !dir.exists() {
                continue;
            }
            let data = src.find(namespace, cms, secrets);
            let version = version_of(v, data);
            if self.current_version(&v.name).as_deref() == Some(version.as_str()) {
                continue;
            }
            // A ConfigMap that went away leaves the files as they were (as the kubelet does).
            let Ok(files) = project(&src, data) else { continue };
            match self.write_projection(&v.name, &dir, &files, &version, fs_group) {
                Ok(()) => updated.push(v.name.clone()),
                Err(e) => {
                    tracing::warn!(volume = v.name, error = %format!("{e:#}"), "updating a projected volume")
                }
            }
        }
        updated
    }

    fn current_version(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.versions.join(name)).ok()
    }

    /// The kubelet's atomic writer: unchanged content is left alone; otherwise the files go
    /// into a new `..<time>` directory, `..data` is switched to it with one rename, the visible
    /// names are symlinks through `..data`, and the old directory is removed.
    fn write_projection(
        &self,
        name: &str,
        dir: &Path,
        files: &[ProjectedFile],
        version: &str,
        fs_group: Option<u32>,
    ) -> anyhow::Result<()> {
        if dir.join("..data").exists() && self.current_version(name).as_deref() == Some(version) {
            return Ok(());
        }
        let old = std::fs::read_link(dir.join("..data")).ok();
        let stamp = format!("..{}", now_stamp());
        let new_dir = dir.join(&stamp);
        let _ = std::fs::remove_dir_all(&new_dir);
        std::fs::create_dir(&new_dir).with_context(|| format!("creating {}", new_dir.display()))?;
        std::fs::set_permissions(&new_dir, std::fs::Permissions::from_mode(PROJECTED_DIR_MODE))?;
        for f in files {
            let path = new_dir.join(&f.path);
            create_dirs_with_mode(&new_dir, Path::new(&f.path).parent(), PROJECTED_DIR_MODE)?;
            write_with_mode(&path, &f.data, f.mode).with_context(|| format!("writing {}", path.display()))?;
            if let Some(g) = fs_group {
                std::os::unix::fs::lchown(&path, None, Some(g))?;
            }
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&stamp, &tmp)?;
        std::fs::rename(&tmp, dir.join("..data")).context("switching ..data")?;
        // The visible names: a symlink per top-level entry, through ..data.
        let mut top: Vec<String> =
            files.iter().filter_map(|f| f.path.split('/').next().map(str::to_string)).collect();
        top.sort();
        top.dedup();
        for t in &top {
            let link = dir.join(t);
            let target = Path::new("..data").join(t);
            if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&target, &link)?;
            }
        }
        // Names no longer projected, and the previous content.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !top.contains(&n) && entry.file_type().is_ok_and(|t| t.is_symlink()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
            if old.to_string_lossy().starts_with("..") && !old.to_string_lossy().contains('/') {
                let _ = std::fs::remove_dir_all(dir.join(old));
            }
        }
        std::fs::create_dir_all(&self.versions)?;
        crate::fsutil::write_atomic(&self.versions.join(name), version.as_bytes())?;
        Ok(())
    }

    /// Unmounts the pod's tmpfs volumes (Memory emptyDirs, secrets) so the pod directory can be
    /// deleted without reaching into a mount.
    pub fn unmount_all(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// The directories of a projected volume: readable by the pod's user, whoever it is, as the
/// kubelet's atomic writer makes them (the files carry the volume's modes).
const PROJECTED_DIR_MODE: u32 = 0o755;

/// Writes a new file with exactly `mode`, whatever the process' umask: created with it (so it
/// is never more open, not even before a chmod; the umask can only narrow it) and then set to
/// it (undoing that narrowing, or a Secret's 0644 would be unreadable for a non-root pod).
fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode & 0o777).open(path)?;
    file.write_all(data)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
}

/// Creates `base/rel` and the directories between them with exactly `mode` (`base` exists).
fn create_dirs_with_mode(base: &Path, rel: Option<&Path>, mode: u32) -> std::io::Result<()> {
    let mut dir = base.to_path_buf();
    for part in rel.into_iter().flat_map(Path::components) {
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a projected volume shows: its object's resource version and the volume's own settings
/// (never the content: a hash of a secret on disk would help guess it).
fn version_of(v: &Volume, data: Option<&ConfigData>) -> String {
    let source = serde_json::to_string(&(&v.config_map, &v.secret)).unwrap_or_default();
    match data {
        Some(d) => format!("{}|{source}", d.resource_version),
        None => format!("absent|{source}"),
    }
}

fn now_stamp() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}_{:09}", d.as_secs(), d.subsec_nanos())
}

/// Mounts a tmpfs on `dir` unless one is already there.
fn mount_tmpfs(dir: &Path, size: Option<u64>, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    use nix::mount::{mount, MsFlags};
    mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
        .with_context(|| format!("mounting a tmpfs on {}", dir.display()))
}

fn is_mount_point(dir: &Path) -> bool {
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// fsGroup: the volume's group becomes it, with the setgid bit so new files keep it.
fn set_fs_group(dir: &Path, gid: Option<u32>) -> anyhow::Result<()> {
    let Some(g) = gid else { return Ok(()) };
    std::os::unix::fs::chown(dir, None, Some(g))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2070))?;
    Ok(())
}

/// Checks (and for the `OrCreate` types creates) a hostPath as Kubernetes does.
pub fn host_path(path: &Path, t: HostPathType) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let shown = path.display();
    match t {
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate => {
            if meta.is_err() {
                std::fs::create_dir_all(path).with_context(|| format!("creating hostPath {shown}"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
                return Ok(());
            }
            ensure(meta.is_ok_and(|m| m.is_dir()), || {
                format!("hostPath type check failed: {shown} is not a directory")
            })
        }
        HostPathType::Directory => ensure(meta.is_ok_and(|m| m.is_dir()), || {
            format!("hostPath type check failed: {shown} is not a directory")
        }),
        HostPathType::FileOrCreate => {
            if meta.is_err() {
                // Like the kubelet: the parent directory must exist.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .with_context(|| format!("creating hostPath file {shown}"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
                return Ok(());
            }
            ensure(meta.is_ok_and(|m| m.is_file()), || {
                format!("hostPath type check failed: {shown} is not a file")
            })
        }
        HostPathType::File => ensure(meta.is_ok_and(|m| m.is_file()), || {
            format!("hostPath type check failed: {shown} is not a file")
        }),
        HostPathType::Socket => ensure(meta.is_ok_and(|m| m.file_type().is_socket()), || {
            format!("hostPath type check failed: {shown} is not a socket file")
        }),
        HostPathType::CharDevice => ensure(meta.is_ok_and(|m| m.file_type().is_char_device()), || {
            format!("hostPath type check failed: {shown} is not a character device")
        }),
        HostPathType::BlockDevice => ensure(meta.is_ok_and(|m| m.file_type().is_block_device()), || {
            format!("hostPath type check failed: {shown} is not a block device")
        }),
    }
}

fn ensure(ok: bool, msg: impl FnOnce() -> String) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        bail!(msg())
    }
}

/// The bind mounts of one container: each volumeMount of a prepared volume, at its mountPath,
/// through its subPath, read-only when asked (ConfigMap and Secret volumes always are).
pub fn mounts_for(
    c: &Container,
    spec: &PodSpec,
    prepared: &BTreeMap<String, PathBuf>,
) -> Result<Vec<BindMount>, VolumeError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(root) = prepared.get(&m.name) else {
            return Err(VolumeError::Config(format!("volumeMount {:?}: the pod has no such volume", m.name)));
        };
        let v = spec.volumes.iter().flatten().find(|v| v.name == m.name);
        let projected = v.is_some_and(|v| v.config_map.is_some() || v.secret.is_some());
        let pvc_ro =
            v.and_then(|v| v.persistent_volume_claim.as_ref()).and_then(|p| p.read_only) == Some(true);
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => sub_path(root, sub, !projected).map_err(|e| VolumeError::Mount(format!("{e:#}")))?,
            None => root.clone(),
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || projected || pvc_ro,
        });
    }
    Ok(out)
}

/// `root/sub`, resolved without leaving `root`: every component is looked at, a symlink is
/// followed only when its target stays inside the volume (as the kubelet's safe subpath).
/// A missing path is created as a directory when `create` (emptyDir, hostPath), as Kubernetes
/// does.
pub fn sub_path(root: &Path, sub: &str, create: bool) -> anyhow::Result<PathBuf> {
    check_relative(sub).map_err(anyhow::Error::msg)?;
    let root = std::fs::canonicalize(root).with_context(|| format!("volume {}", root.display()))?;
    let joined = root.join(sub);
    if std::fs::symlink_metadata(&joined).is_err() && create {
        std::fs::create_dir_all(&joined).with_context(|| format!("creating subPath {sub:?}"))?;
    }
    let resolved = std::fs::canonicalize(&joined).with_context(|| format!("subPath {sub:?}"))?;
    if !resolved.starts_with(&root) {
        bail!("subPath {sub:?} resolves to {} outside the volume", resolved.display());
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::wire::serde_bytes_compat::Bytes;

    fn data(pairs: &[(&str, &str)]) -> ConfigData {
        ConfigData {
            namespace: "default".into(),
            name: "app".into(),
            resource_version: "7".into(),
            data: pairs.iter().map(|(k, v)| (k.to_string(), Bytes::from(*v))).collect(),
        }
    }

    fn src<'a>(items: Option<&'a [KeyToPath]>, optional: bool) -> ProjectionSource<'a> {
        ProjectionSource { kind: "configmap", name: "app", items, default_mode: Some(0o600), optional }
    }

    #[test]
    fn projection_takes_all_keys_or_the_items() {
        let d = data(&[("a.conf", "A"), ("b.conf", "B")]);
        let all = project(&src(None, false), Some(&d)).unwrap();
        assert_eq!(
            all.iter().map(|f| (f.path.as_str(), f.mode)).collect::<Vec<_>>(),
            [("a.conf", 0o600), ("b.conf", 0o600)]
        );
        let items = [KeyToPath { key: "b.conf".into(), path: "sub/b".into(), mode: Some(0o400) }];
        let some = project(&src(Some(&items), false), Some(&d)).unwrap();
        assert_eq!(some, vec![ProjectedFile { path: "sub/b".into(), data: b"B".to_vec(), mode: 0o400 }]);
    }

    #[test]
    fn missing_objects_and_keys_are_config_errors_unless_optional() {
        let err = project(&src(None, false), None).unwrap_err();
        assert!(matches!(&err, VolumeError::Config(m) if m == "configmap \"app\" not found"), "{err}");
        assert_eq!(project(&src(None, true), None).unwrap(), vec![]);
        let items = [KeyToPath { key: "nope".into(), path: "x".into(), mode: None }];
        let err = project(&src(Some(&items), false), Some(&data(&[]))).unwrap_err();
        assert_eq!(err.to_string(), "configmap \"app\" references non-existent config key: nope");
        assert_eq!(project(&src(Some(&items), true), Some(&data(&[]))).unwrap(), vec![]);
    }

    #[test]
    fn item_paths_cannot_escape() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            let items = [KeyToPath { key: "a".into(), path: bad.into(), mode: None }];
            assert!(project(&src(Some(&items), false), Some(&data(&[("a", "A")]))).is_err(), "{bad}");
        }
    }

    #[test]
    fn projected_files_get_exactly_their_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let vols = PodVolumes::new(tmp.path());
        let dir = tmp.path().join("volumes/tls");
        std::fs::create_dir_all(&dir).unwrap();
        let f = |p: &str, mode| ProjectedFile { path: p.into(), data: b"x".to_vec(), mode };
        let files = [f("key", 0o400), f("certs/ca/ca.crt", 0o644), f("group", 0o640)];
        vols.write_projection("tls", &dir, &files, "v1", None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let data = dir.join("..data");
        assert_eq!(
            [mode(&data.join("key")), mode(&data.join("certs/ca/ca.crt")), mode(&data.join("group"))],
            [0o400, 0o644, 0o640]
        );
        for d in [data.clone(), data.join("certs"), data.join("certs/ca")] {
            assert_eq!(mode(&d), 0o755, "{}", d.display());
        }
    }

    #[test]
    fn projections_swap_atomically_and_drop_old_names() {
        let tmp = tempfile::tempdir().unwrap();
        let vols = PodVolumes::new(tmp.path());
        let dir = tmp.path().join("volumes/cfg");
        std::fs::create_dir_all(&dir).unwrap();
        let f = |p: &str, d: &str| ProjectedFile { path: p.into(), data: d.as_bytes().to_vec(), mode: 0o644 };
        vols.write_projection("cfg", &dir, &[f("a", "1"), f("b", "1")], "v1", None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        vols.write_projection("cfg", &dir, &[f("a", "2")], "v2", None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "2");
        assert!(!dir.join("b").exists(), "a key that went away goes");
        assert!(!dir.join(&first).exists(), "the previous content is removed");
        assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        // Same version: nothing is rewritten.
        let current = std::fs::read_link(dir.join("..data")).unwrap();
        vols.write_projection("cfg", &dir, &[f("a", "3")], "v2", None).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), current);
    }

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("vol");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("in", root.join("alias")).unwrap();
        assert!(sub_path(&root, "in", false).unwrap().ends_with("vol/in"));
        assert!(sub_path(&root, "alias", false).unwrap().ends_with("vol/in"), "a symlink inside is fine");
        assert!(sub_path(&root, "out", false).unwrap_err().to_string().contains("outside the volume"));
        assert!(sub_path(&root, "../x", true).is_err());
        assert!(sub_path(&root, "new/dir", true).unwrap().is_dir(), "created like the kubelet does");
    }

    #[test]
    fn host_path_types_are_checked_and_created() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        host_path(&d, HostPathType::DirectoryOrCreate).unwrap();
        assert!(d.is_dir());
        host_path(&d, HostPathType::Directory).unwrap();
        assert!(host_path(&d, HostPathType::File).unwrap_err().to_string().contains("is not a file"));
        let f = tmp.path().join("f");
        host_path(&f, HostPathType::FileOrCreate).unwrap();
        assert!(f.is_file());
        assert!(
            host_path(&tmp.path().join("no/f"), HostPathType::FileOrCreate).is_err(),
            "parent must exist"
        );
        assert!(host_path(&tmp.path().join("none"), HostPathType::Directory).is_err());
        host_path(Path::new("/dev/null"), HostPathType::CharDevice).unwrap();
        assert!(host_path(&f, HostPathType::CharDevice)
            .unwrap_err()
            .to_string()
            .contains("not a character device"));
        assert!(host_path(&f, HostPathType::Socket).is_err());
        assert!(host_path(&f, HostPathType::BlockDevice).is_err());
        host_path(&tmp.path().join("anything"), HostPathType::Unset).unwrap();
    }
}
