//! The mount points `/proc/self/mountinfo` lists, with its octal escapes undone, and a
//! cheaper test for one path.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Whether `path` (symlinks followed) is the root of a mount. Asks the kernel about that one
/// path (`statx`, Linux 5.8+) instead of reading the whole mount table, whose length grows
/// with every pod; falls back to the table where `statx` cannot tell. A missing path is not
/// a mount point.
pub fn is_mount_root(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: libc::statx is plain old data, for which all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes into the zeroed struct we own; the path is NUL-terminated.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_NO_AUTOMOUNT, 0, &mut stx) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(false),
            Some(libc::ENOSYS) => in_table(path),
            _ => Err(e),
        };
    }
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & bit == 0 {
        return in_table(path);
    }
    Ok(stx.stx_attributes & bit != 0)
}

fn in_table(path: &Path) -> io::Result<bool> {
    let Ok(canonical) = std::fs::canonicalize(path) else { return Ok(false) };
    Ok(mount_points()?.contains(&canonical))
}

/// Mount points of this process's mount namespace.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect())
}

/// mountinfo writes space, tab, newline and backslash as three-digit octal escapes.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            let v = u16::from(d[0] - b'0') * 64 + u16::from(d[1] - b'0') * 8 + u16::from(d[2] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert_eq!(unescape("/big\\777"), "/big?");
    }

    #[test]
    fn the_root_is_a_mount_point() {
        assert!(mount_points().unwrap().contains(&PathBuf::from("/")));
        assert!(is_mount_root(Path::new("/")).unwrap());
        assert!(is_mount_root(Path::new("/proc")).unwrap());
    }

    #[test]
    fn plain_and_missing_paths_are_not_mount_points() {
        let d = std::env::temp_dir().join(format!("k3rs-mountinfo-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        assert!(!is_mount_root(&d.join("sub")).unwrap());
        assert!(!is_mount_root(&d.join("missing")).unwrap());
        assert!(!is_mount_root(&d.join("missing/below")).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn statx_and_the_table_agree_on_every_listed_mount_point() {
        for p in mount_points().unwrap() {
            // Stacked or hidden mounts aside, whatever the table lists is a mount root.
            if let Ok(true) = in_table(&p) {
                if std::fs::metadata(&p).is_ok() && std::fs::canonicalize(&p).ok().as_ref() == Some(&p) {
                    assert!(is_mount_root(&p).unwrap(), "{} is listed but statx disagrees", p.display());
                }
            }
        }
    }
}
