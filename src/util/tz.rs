//! IANA time zones from the system's zoneinfo files, looked up as Go's `time.LoadLocation`
//! looks them up (what upstream's CronJob `timeZone` uses): `UTC` and the empty name are
//! UTC; other names are files under the zoneinfo directories, and a name that could leave
//! them (`..`, absolute) is refused.

use k8s_openapi::jiff::tz::TimeZone;

/// Where zoneinfo files are looked for, in Go's order.
const ZONEINFO_DIRS: &[&str] =
    &["/usr/share/zoneinfo/", "/usr/share/lib/zoneinfo/", "/usr/lib/locale/TZ/", "/etc/zoneinfo/"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("time: invalid location name")]
    InvalidName,
    #[error("unknown time zone {0}")]
    Unknown(String),
}

/// The zone named `name`.
pub fn load(name: &str) -> Result<TimeZone, ZoneError> {
    load_from(name, ZONEINFO_DIRS)
}

fn load_from(name: &str, dirs: &[&str]) -> Result<TimeZone, ZoneError> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name.split('/').any(|p| p == "..") || name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err(ZoneError::InvalidName);
    }
    for dir in dirs {
        let path = std::path::Path::new(dir).join(name);
        if let Ok(data) = std::fs::read(&path) {
            if let Ok(tz) = TimeZone::tzif(name, &data) {
                return Ok(tz);
            }
        }
    }
    Err(ZoneError::Unknown(name.to_string()))
}

/// The machine's local zone, as Go's `time.Local` is found: `TZ` (a zone name; empty is
/// UTC), else `/etc/localtime`, else UTC.
pub fn local() -> TimeZone {
    local_from(std::env::var("TZ").ok().as_deref(), "/etc/localtime")
}

fn local_from(tz_env: Option<&str>, localtime: &str) -> TimeZone {
    if let Some(name) = tz_env {
        // Go takes `:Name` as `Name`.
        let name = name.strip_prefix(':').unwrap_or(name);
        if let Ok(tz) = load(name) {
            return tz;
        }
    }
    std::fs::read(localtime).ok().and_then(|data| TimeZone::tzif("Local", &data).ok()).unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_safely() {
        assert_eq!(load("").unwrap(), TimeZone::UTC);
        assert_eq!(load("UTC").unwrap(), TimeZone::UTC);
        assert_eq!(load("../etc/passwd").unwrap_err(), ZoneError::InvalidName);
        assert_eq!(load("/etc/localtime").unwrap_err(), ZoneError::InvalidName);
        assert_eq!(load("Mars/Olympus").unwrap_err().to_string(), "unknown time zone Mars/Olympus");
    }

    #[test]
    fn the_local_zone_is_tz_then_localtime_then_utc() {
        assert_eq!(local_from(Some(""), "/nonexistent"), TimeZone::UTC);
        assert_eq!(local_from(Some(":UTC"), "/nonexistent"), TimeZone::UTC);
        assert_eq!(local_from(None, "/nonexistent"), TimeZone::UTC);
        // An unknown TZ falls through to the file (missing here: UTC).
        assert_eq!(local_from(Some("Mars/Olympus"), "/nonexistent"), TimeZone::UTC);
    }

    #[test]
    fn a_zoneinfo_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // A minimal TZif (version 1) for a fixed UTC+2 zone, so the test does not depend
        // on the machine's zoneinfo.
        let mut tzif = Vec::new();
        tzif.extend_from_slice(b"TZif\0");
        tzif.extend_from_slice(&[0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for n in [0u32, 0, 0, 0, 1, 4] {
            tzif.extend_from_slice(&n.to_be_bytes());
        }
        tzif.extend_from_slice(&7200i32.to_be_bytes());
        tzif.extend_from_slice(&[0, 0]);
        tzif.extend_from_slice(b"XX2\0");
        std::fs::create_dir_all(dir.path().join("Test")).unwrap();
        std::fs::write(dir.path().join("Test/Plus2"), &tzif).unwrap();
        let base = format!("{}/", dir.path().display());
        let tz = load_from("Test/Plus2", &[base.as_str()]).unwrap();
        let t: k8s_openapi::jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(tz.to_offset(t).seconds(), 7200);
    }
}
