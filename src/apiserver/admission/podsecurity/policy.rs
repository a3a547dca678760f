//! Pod Security levels and versions, and the policy a namespace's
//! `pod-security.kubernetes.io/*` labels select, with upstream's defaulting and its answers
//! to labels it cannot read (enforce fails closed, audit and warn fail open).

use std::collections::BTreeMap;
use std::fmt;

use crate::apiserver::status::Cause;

pub const ENFORCE_LEVEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standard, least strict first (so `Ord` compares strictness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kubernetes minor release whose policy a version names; `latest` is newer than any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// `v1.N`.
    V1(u64),
    Latest,
}

impl Version {
    /// `latest` or `v1.N` (no leading zeros), as upstream accepts.
    fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        let digits_only = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || (minor.len() > 1 && minor.starts_with('0')) {
            return None;
        }
        minor.parse().ok().map(Version::V1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::V1(minor) => write!(f, "v1.{minor}"),
            Version::Latest => f.write_str("latest"),
        }
    }
}

/// A level as of a version: `restricted:latest`, `baseline:v1.25`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

const PRIVILEGED_LATEST: LevelVersion = LevelVersion { level: Level::Privileged, version: Version::Latest };

/// What a namespace asks of its pods in each mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// A label upstream cannot read, as a field error on the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    pub label: &'static str,
    pub value: String,
    pub detail: &'static str,
}

impl LabelError {
    pub fn cause(&self) -> Cause {
        Cause::invalid(format!("metadata.labels[{}]", self.label), &self.value, self.detail)
    }
}

const BAD_LEVEL: &str = "must be one of privileged, baseline, restricted";
const BAD_VERSION: &str = "must be \"latest\" or \"v1.x\"";

impl Policy {
    /// kube-apiserver's default with no PodSecurity configuration: privileged, in every
    /// mode, everywhere (kube-system included) until a namespace is labelled.
    pub const DEFAULT: Policy =
        Policy { enforce: PRIVILEGED_LATEST, audit: PRIVILEGED_LATEST, warn: PRIVILEGED_LATEST };

    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn].iter().all(|lv| lv.level == Level::Privileged)
    }

    /// The policy a namespace's labels select over the default, and the labels that could
    /// not be read. An unreadable enforce level enforces `restricted`; unreadable audit and
    /// warn levels are `privileged`; an unreadable version is `latest`. Without its own
    /// warn label, a namespace is warned at its enforce level when that is stricter.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> (Policy, Vec<LabelError>) {
        let mut p = Policy::DEFAULT;
        let mut errors = Vec::new();
        let enforce = read_level(labels, ENFORCE_LEVEL, Level::Restricted, &mut errors);
        if let Some((level, _)) = enforce {
            p.enforce.level = level;
        }
        if let Some(v) = read_version(labels, ENFORCE_VERSION, &mut errors) {
            p.enforce.version = v;
        }
        if let Some((level, _)) = read_level(labels, AUDIT_LEVEL, Level::Privileged, &mut errors) {
            p.audit.level = level;
        }
        if let Some(v) = read_version(labels, AUDIT_VERSION, &mut errors) {
            p.audit.version = v;
        }
        let warn_level = read_level(labels, WARN_LEVEL, Level::Privileged, &mut errors);
        if let Some((level, _)) = warn_level {
            p.warn.level = level;
        }
        let warn_version = read_version(labels, WARN_VERSION, &mut errors);
        if let Some(v) = warn_version {
            p.warn.version = v;
        }
        // A readable enforce level, and no warn level of its own: warn at least as strictly.
        if warn_level.is_none() && matches!(enforce, Some((_, true))) && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if warn_version.is_none() {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }
}

/// A level label's value and whether it could be read (`unreadable` stands in when not);
/// none when the label is absent.
fn read_level(
    labels: &BTreeMap<String, String>,
    label: &'static str,
    unreadable: Level,
    errors: &mut Vec<LabelError>,
) -> Option<(Level, bool)> {
    let value = labels.get(label)?;
    Some(match Level::parse(value) {
        Some(level) => (level, true),
        None => {
            errors.push(LabelError { label, value: value.clone(), detail: BAD_LEVEL });
            (unreadable, false)
        }
    })
}

/// A version label's value (`latest` when it cannot be read); none when it is absent.
fn read_version(
    labels: &BTreeMap<String, String>,
    label: &'static str,
    errors: &mut Vec<LabelError>,
) -> Option<Version> {
    let value = labels.get(label)?;
    Some(Version::parse(value).unwrap_or_else(|| {
        errors.push(LabelError { label, value: value.clone(), detail: BAD_VERSION });
        Version::Latest
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }

    #[test]
    fn versions_parse_as_upstream() {
        assert_eq!(Version::parse("latest"), Some(Version::Latest));
        assert_eq!(Version::parse("v1.0"), Some(Version::V1(0)));
        assert_eq!(Version::parse("v1.25"), Some(Version::V1(25)));
        for bad in ["", "v1", "v1.", "v1.025", "v2.1", "1.25", "v1.2x", "Latest", "v1.-1", "v1.+1"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::V1(99) < Version::Latest);
        assert_eq!(Version::V1(7).to_string(), "v1.7");
        assert_eq!(lv(Level::Restricted, Version::Latest).to_string(), "restricted:latest");
    }

    #[test]
    fn no_labels_is_privileged_everywhere() {
        let (p, errors) = Policy::from_labels(&BTreeMap::new());
        assert_eq!(p, Policy::DEFAULT);
        assert!(errors.is_empty());
        assert!(p.fully_privileged());
        let (p, _) = Policy::from_labels(&labels(&[("app", "web")]));
        assert!(p.fully_privileged());
    }

    #[test]
    fn warn_follows_a_stricter_enforce_unless_labelled() {
        let (p, _) = Policy::from_labels(&labels(&[(ENFORCE_LEVEL, "baseline"), (ENFORCE_VERSION, "v1.24")]));
        assert_eq!(p.enforce, lv(Level::Baseline, Version::V1(24)));
        assert_eq!(p.warn, lv(Level::Baseline, Version::V1(24)));
        assert_eq!(p.audit, PRIVILEGED_LATEST);

        let (p, _) = Policy::from_labels(&labels(&[
            (ENFORCE_LEVEL, "restricted"),
            (ENFORCE_VERSION, "v1.24"),
            (WARN_VERSION, "v1.30"),
        ]));
        assert_eq!(p.warn, lv(Level::Restricted, Version::V1(30)));

        let (p, _) = Policy::from_labels(&labels(&[(ENFORCE_LEVEL, "restricted"), (WARN_LEVEL, "privileged")]));
        assert_eq!(p.warn, PRIVILEGED_LATEST);
    }

    #[test]
    fn unreadable_labels_fail_closed_for_enforce_and_open_for_the_rest() {
        let (p, errors) = Policy::from_labels(&labels(&[
            (ENFORCE_LEVEL, "strict"),
            (ENFORCE_VERSION, "v2"),
            (AUDIT_LEVEL, "loud"),
            (WARN_LEVEL, "noisy"),
            (WARN_VERSION, "v1.01"),
        ]));
        assert_eq!(p.enforce, lv(Level::Restricted, Version::Latest));
        assert_eq!(p.audit.level, Level::Privileged);
        // No warning level copied from an enforce level that could not be read.
        assert_eq!(p.warn, PRIVILEGED_LATEST);
        let fields: Vec<String> = errors.iter().map(|e| e.label.to_string()).collect();
        assert_eq!(fields, [ENFORCE_LEVEL, ENFORCE_VERSION, AUDIT_LEVEL, WARN_LEVEL, WARN_VERSION]);
        let cause = errors[0].cause();
        assert_eq!(cause.field, "metadata.labels[pod-security.kubernetes.io/enforce]");
        assert_eq!(cause.message, "Invalid value: \"strict\": must be one of privileged, baseline, restricted");
        assert_eq!(errors[1].cause().message, "Invalid value: \"v2\": must be \"latest\" or \"v1.x\"");

        // An unreadable enforce level alone still copies nothing into warn.
        let (p, _) = Policy::from_labels(&labels(&[(ENFORCE_LEVEL, "strict")]));
        assert_eq!(p.warn, PRIVILEGED_LATEST);
    }
}
