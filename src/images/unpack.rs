//! Unpacks one layer tar (gzip or plain) into a directory that overlayfs can stack as a
//! lowerdir: OCI whiteouts become overlay whiteouts (`.wh.<name>` → a 0:0 character device
//! named `<name>`; `.wh..wh..opq` → the `trusted.overlay.opaque` xattr on its directory).
//! Owners, modes, mtimes, symlinks, hard links, devices and xattrs are kept. Every path is
//! resolved inside the target and no parent may be a symlink, so a hostile layer cannot
//! write outside it.

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::digest::HashingReader;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks `layer` (a gzip or uncompressed tar stream) into the existing empty directory
/// `dest`. Returns the diff ID: the sha256 of the uncompressed tar.
pub fn unpack_layer(layer: impl Read, dest: &Path) -> Result<String, String> {
    let mut buffered = BufReader::with_capacity(256 * 1024, layer);
    let head = buffered.fill_buf().map_err(|e| format!("read: {e}"))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err("zstd-compressed layers are not supported".into());
    }
    let stream: Box<dyn Read> =
        if gzip { Box::new(flate2::read::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut hashing = HashingReader::new(stream);
    unpack_tar(&mut hashing, dest)?;
    let (diff_id, _) = hashing.finish().map_err(|e| format!("read: {e}"))?;
    Ok(diff_id)
}

fn unpack_tar(stream: &mut impl Read, dest: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(stream);
    // Directories get their mtimes last: writing their children would change them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| format!("read tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read tar entry: {e}"))?;
        let raw = entry.path().map_err(|e| format!("tar entry path: {e}"))?.into_owned();
        let Some(rel) = clean_path(&raw)? else { continue };
        let target = dest.join(&rel);
        ensure_parents(dest, &rel)?;
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = target.parent().unwrap_or(dest);
            set_xattr(dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(|e| format!("{}: mark opaque: {e}", raw.display()))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh..wh.*` other than the opaque marker are aufs internals (hard-link dirs).
            if hidden.starts_with(WHITEOUT_PREFIX) {
                continue;
            }
            let whiteout = target.with_file_name(hidden);
            remove_existing(&whiteout)?;
            mknod(&whiteout, libc::S_IFCHR, 0, 0).map_err(|e| format!("{}: whiteout: {e}", raw.display()))?;
            continue;
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(|e| format!("{}: mode: {e}", raw.display()))? & 0o7777;
        let uid = header.uid().map_err(|e| format!("{}: uid: {e}", raw.display()))?;
        let gid = header.gid().map_err(|e| format!("{}: gid: {e}", raw.display()))?;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let kind = header.entry_type();
        let ctx = |what: &str| {
            let raw = raw.display().to_string();
            let what = what.to_string();
            move |e: std::io::Error| format!("{raw}: {what}: {e}")
        };
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&target)?;
                        fs::DirBuilder::new().mode(0o755).create(&target).map_err(ctx("mkdir"))?;
                    }
                    Err(_) => fs::DirBuilder::new().mode(0o755).create(&target).map_err(ctx("mkdir"))?,
                }
                chown(&target, uid, gid).map_err(ctx("chown"))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(ctx("chmod"))?;
                dir_times.push((target.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&target)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(ctx("create"))?;
                std::io::copy(&mut entry, &mut file).map_err(ctx("write"))?;
                drop(file);
                // chown before chmod: chown clears the set-id bits.
                chown(&target, uid, gid).map_err(ctx("chown"))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(ctx("chmod"))?;
                set_mtime(&target, mtime).map_err(ctx("set mtime"))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(ctx("link name"))?
                    .ok_or_else(|| format!("{}: symlink without target", raw.display()))?;
                remove_existing(&target)?;
                std::os::unix::fs::symlink(&link, &target).map_err(ctx("symlink"))?;
                chown(&target, uid, gid).map_err(ctx("chown"))?;
                set_mtime(&target, mtime).map_err(ctx("set mtime"))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(ctx("link name"))?
                    .ok_or_else(|| format!("{}: hard link without target", raw.display()))?;
                let Some(link_rel) = clean_path(&link)? else {
                    return Err(format!("{}: hard link to the layer root", raw.display()));
                };
                ensure_parents(dest, &link_rel)?;
                let source = dest.join(&link_rel);
                let meta = fs::symlink_metadata(&source).map_err(ctx("hard link target"))?;
                if meta.is_dir() {
                    return Err(format!("{}: hard link to a directory", raw.display()));
                }
                remove_existing(&target)?;
                fs::hard_link(&source, &target).map_err(ctx("hard link"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                remove_existing(&target)?;
                mknod(&target, fmt, major, minor).map_err(ctx("mknod"))?;
                chown(&target, uid, gid).map_err(ctx("chown"))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(ctx("chmod"))?;
                set_mtime(&target, mtime).map_err(ctx("set mtime"))?;
            }
            // PAX and GNU long-name headers are folded into the next entry by the tar crate.
            _ => continue,
        }
        apply_xattrs(&mut entry, &target)?;
    }
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(|e| format!("{}: set mtime: {e}", dir.display()))?;
    }
    Ok(())
}

/// The entry's path relative to the layer root, or `None` for the root itself. `..` that
/// would climb out of the layer is refused; absolute paths are taken as layer-relative.
fn clean_path(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!("{}: path escapes the layer", raw.display()));
                }
            }
            Component::Prefix(_) => return Err(format!("{}: invalid path", raw.display())),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// Creates the missing parents of `rel` under `dest` and refuses a parent that is not a
/// directory (a symlink there could point anywhere).
fn ensure_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let Some(parent) = rel.parent() else { return Ok(()) };
    let mut at = dest.to_path_buf();
    for c in parent.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{}: a parent is not a directory (path escapes the layer?)", rel.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(&at).map_err(|e| format!("{}: mkdir: {e}", at.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| format!("{}: replace: {e}", path.display())),
        Ok(_) => fs::remove_file(path).map_err(|e| format!("{}: replace: {e}", path.display())),
        Err(_) => Ok(()),
    }
}

/// PAX `SCHILY.xattr.*` records (file capabilities, user xattrs). Overlay's own trusted
/// attributes are never taken from a layer: they would let it forge whiteouts or redirects.
fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, target: &Path) -> Result<(), String> {
    let Ok(Some(exts)) = entry.pax_extensions() else { return Ok(()) };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix("SCHILY.xattr.") else { continue };
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Err(e) = set_xattr(target, name, ext.value_bytes()) {
            tracing::debug!(path = %target.display(), xattr = name, error = %e, "xattr not applied");
        }
    }
    Ok(())
}

fn cpath(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

fn chown(path: &Path, uid: u64, gid: u64) -> std::io::Result<()> {
    let uid = u32::try_from(uid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let gid = u32::try_from(gid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

fn set_mtime(path: &Path, secs: i64) -> std::io::Result<()> {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(None, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(std::io::Error::from)
}

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) -> std::io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: a NUL-terminated path we own; mknod has no memory effects.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, libc::makedev(major, minor)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = cpath(path)?;
    let n = CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated strings and a value buffer valid for its length.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_000_000);
        h
    }

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(path, tar::EntryType::Regular, 0o4755, data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn add_raw(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = header("x", kind, 0o755, 0);
        // Raw names: the tar crate's set_path refuses `..`, a hostile layer would not.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).expect("link");
        }
        h.set_cksum();
        b.append(&h, &[][..]).expect("append");
    }

    #[test]
    fn unpacks_files_links_whiteouts_and_keeps_metadata() {
        let data = layer(|b| {
            add_raw(b, "etc/", tar::EntryType::Directory, "");
            add_file(b, "etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
            add_file(b, "./bin/tool", b"#!/bin/sh\n");
            add_raw(b, "bin/alias", tar::EntryType::Symlink, "tool");
            add_raw(b, "bin/hard", tar::EntryType::Link, "bin/tool");
            add_raw(b, "var/.wh.gone", tar::EntryType::Regular, "");
            add_raw(b, "opt/.wh..wh..opq", tar::EntryType::Regular, "");
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).expect("gzip");
            e.finish().expect("gzip")
        };
        let diff = unpack_layer(&gz[..], dir.path()).expect("unpack");
        assert_eq!(diff, super::super::digest::sha256(&data));
        let root = dir.path();
        assert_eq!(fs::read_to_string(root.join("etc/passwd")).expect("read"), "root:x:0:0::/root:/bin/sh\n");
        let tool = fs::metadata(root.join("bin/tool")).expect("stat");
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!((tool.uid(), tool.gid()), (1000, 2000));
        assert_eq!(tool.mtime(), 1_000_000);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(fs::read_link(root.join("bin/alias")).expect("readlink"), Path::new("tool"));
        let wh = fs::symlink_metadata(root.join("var/gone")).expect("whiteout");
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!root.join("var/.wh.gone").exists());
        let mut buf = [0u8; 4];
        let c = cpath(&root.join("opt")).expect("cpath");
        let n = CString::new(OVERLAY_OPAQUE_XATTR).expect("name");
        // SAFETY: valid strings and buffer.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(len, 1);
        assert_eq!(buf[0], b'y');
        assert_eq!(fs::metadata(root.join("etc")).expect("stat").mtime(), 1_000_000);
    }

    #[test]
    fn refuses_paths_escaping_the_layer() {
        for data in [
            layer(|b| add_raw(b, "../evil", tar::EntryType::Regular, "")),
            layer(|b| add_raw(b, "a/../../evil", tar::EntryType::Regular, "")),
            layer(|b| {
                add_raw(b, "up", tar::EntryType::Symlink, "/tmp");
                add_raw(b, "up/evil", tar::EntryType::Regular, "");
            }),
            layer(|b| add_raw(b, "h", tar::EntryType::Link, "../../etc/shadow")),
        ] {
            let outer = tempfile::tempdir().expect("tempdir");
            let dest = outer.path().join("layer");
            fs::create_dir(&dest).expect("mkdir");
            let err = unpack_layer(&data[..], &dest).expect_err("must be refused");
            assert!(err.contains("escapes"), "{err}");
            assert!(!outer.path().join("evil").exists());
        }
    }
}
