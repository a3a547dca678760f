//! Field selectors: the string grammar (`a=b,c!=d`, with `\,` `\=` `\\` escapes in values),
//! the fields each kind lets clients select on, and matching against a JSON object.

use std::fmt;

use serde_json::Value;

use super::SelectorError;
use crate::domain::quote::go_quote;

/// How a [`FieldRequirement`] compares the field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value`
    Equals,
    /// `field==value` (the same as `=`)
    DoubleEquals,
    /// `field!=value`
    NotEquals,
}

/// One term of a field selector. The value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value compared with, unescaped.
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, have: &str) -> bool {
        match self.operator {
            FieldOperator::Equals | FieldOperator::DoubleEquals => have == self.value,
            FieldOperator::NotEquals => have != self.value,
        }
    }
}

/// Upstream's form: `=` for both equality operators, values escaped.
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals | FieldOperator::DoubleEquals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// Escape `\`, `,` and `=` so a literal value can be put in a field selector.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(SelectorError::FieldSelectorParse(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    )))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, which is its code point.
            ',' | '=' => {
                return Err(SelectorError::FieldSelectorParse(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::FieldSelectorParse("invalid field selector: invalid escape sequence: \\".into()));
    }
    Ok(out)
}

/// Comma-separated terms; an escaped comma stays inside its term, backslash included.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first operator in the term splits it; the left side has no escaping.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, op) in
            [("!=", FieldOperator::NotEquals), ("==", FieldOperator::DoubleEquals), ("=", FieldOperator::Equals)]
        {
            if let Some(value) = rest.strip_prefix(text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// A parsed field selector: the AND of its requirements. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parse the string form, as `?fieldSelector=` carries it. Terms are kept in the sorted
    /// order upstream checks them in.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, operator, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldSelectorParse(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement { field: lhs.to_string(), operator, value: unescape_value(rhs)? });
        }
        Ok(FieldSelector { requirements })
    }

    /// A one-term selector `field=value`.
    pub fn equals(field: &str, value: &str) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.to_string(),
                operator: FieldOperator::Equals,
                value: value.to_string(),
            }],
        }
    }

    /// Whether this selects every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether an object whose fields `get` returns is selected; a field `get` does not know
    /// is the empty string, as upstream's field sets treat it.
    pub fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.field).as_deref().unwrap_or("")))
    }

    /// The value `field` must have for an object to match, when the selector pins it.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// How a selectable field's value is read from the object's JSON (always as the string
/// upstream compares with).
#[derive(Debug, Clone, Copy)]
enum Extract {
    /// A string at this JSON pointer; missing is "".
    Str(&'static str),
    /// A boolean at this pointer, as "true"/"false"; missing is "false".
    Bool(&'static str),
    /// An integer at this pointer, in decimal; missing is "0".
    Int(&'static str),
    /// The pod's first IP: `status.podIPs[0].ip`, else `status.podIP`.
    PodIp,
    /// Accepted in a selector but never in the object's field set, so always "".
    Unset,
    /// core/v1 Event `source`: `source.component`, else `reportingComponent`.
    CoreEventSource,
    /// events.k8s.io/v1 Event `source`: `deprecatedSource.component`, else `reportingController`.
    EventsEventSource,
    /// Another label's value: the selector is rewritten to that label (pods' old `spec.host`).
    Alias(&'static str),
}

/// How a kind words its refusal of a field label.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// `field label not supported: X`
    NotSupported,
    /// `field label "X" not supported for batchv1.Job`
    BatchJob,
    /// `"X" is not a known field selector: only "metadata.name", "metadata.namespace"`
    MetaOnly,
}

/// The field labels one kind accepts in a field selector, and how each is read from an object.
#[derive(Debug)]
pub struct SelectableFields {
    fields: &'static [(&'static str, Extract)],
    refusal: Refusal,
}

const META: [(&str, Extract); 2] =
    [("metadata.name", Extract::Str("/metadata/name")), ("metadata.namespace", Extract::Str("/metadata/namespace"))];

static DEFAULT: SelectableFields = SelectableFields { fields: &META, refusal: Refusal::MetaOnly };

static POD: SelectableFields = SelectableFields {
    fields: &[
        META[0],
        META[1],
        ("spec.nodeName", Extract::Str("/spec/nodeName")),
        ("spec.restartPolicy", Extract::Str("/spec/restartPolicy")),
        ("spec.schedulerName", Extract::Str("/spec/schedulerName")),
        ("spec.serviceAccountName", Extract::Str("/spec/serviceAccountName")),
        ("spec.hostNetwork", Extract::Bool("/spec/hostNetwork")),
        ("status.phase", Extract::Str("/status/phase")),
        ("status.podIP", Extract::PodIp),
        ("status.podIPs", Extract::Unset),
        ("status.nominatedNodeName", Extract::Str("/status/nominatedNodeName")),
        ("spec.host", Extract::Alias("spec.nodeName")),
    ],
    refusal: Refusal::NotSupported,
};

static NODE: SelectableFields = SelectableFields {
    fields: &[META[0], ("spec.unschedulable", Extract::Bool("/spec/unschedulable"))],
    refusal: Refusal::NotSupported,
};

static REPLICATION_CONTROLLER: SelectableFields = SelectableFields {
    fields: &[META[0], META[1], ("status.replicas", Extract::Int("/status/replicas"))],
    refusal: Refusal::NotSupported,
};

static CORE_EVENT: SelectableFields = SelectableFields {
    fields: &[
        ("involvedObject.kind", Extract::Str("/involvedObject/kind")),
        ("involvedObject.namespace", Extract::Str("/involvedObject/namespace")),
        ("involvedObject.name", Extract::Str("/involvedObject/name")),
        ("involvedObject.uid", Extract::Str("/involvedObject/uid")),
        ("involvedObject.apiVersion", Extract::Str("/involvedObject/apiVersion")),
        ("involvedObject.resourceVersion", Extract::Str("/involvedObject/resourceVersion")),
        ("involvedObject.fieldPath", Extract::Str("/involvedObject/fieldPath")),
        ("reason", Extract::Str("/reason")),
        ("reportingComponent", Extract::Str("/reportingComponent")),
        ("source", Extract::CoreEventSource),
        ("type", Extract::Str("/type")),
        META[1],
        META[0],
    ],
    refusal: Refusal::NotSupported,
};

static EVENTS_EVENT: SelectableFields = SelectableFields {
    fields: &[
        ("reason", Extract::Str("/reason")),
        ("regarding.kind", Extract::Str("/regarding/kind")),
        ("regarding.namespace", Extract::Str("/regarding/namespace")),
        ("regarding.name", Extract::Str("/regarding/name")),
        ("regarding.uid", Extract::Str("/regarding/uid")),
        ("regarding.apiVersion", Extract::Str("/regarding/apiVersion")),
        ("regarding.resourceVersion", Extract::Str("/regarding/resourceVersion")),
        ("regarding.fieldPath", Extract::Str("/regarding/fieldPath")),
        ("reportingController", Extract::Str("/reportingController")),
        ("source", Extract::EventsEventSource),
        ("type", Extract::Str("/type")),
        META[1],
        META[0],
    ],
    refusal: Refusal::NotSupported,
};

static NAMESPACE: SelectableFields = SelectableFields {
    fields: &[("status.phase", Extract::Str("/status/phase")), META[0]],
    refusal: Refusal::NotSupported,
};

static SECRET: SelectableFields =
    SelectableFields { fields: &[("type", Extract::Str("/type")), META[1], META[0]], refusal: Refusal::NotSupported };

static SERVICE: SelectableFields = SelectableFields {
    fields: &[
        META[1],
        META[0],
        ("spec.clusterIP", Extract::Str("/spec/clusterIP")),
        ("spec.type", Extract::Str("/spec/type")),
    ],
    refusal: Refusal::NotSupported,
};

static JOB: SelectableFields = SelectableFields {
    fields: &[META[0], META[1], ("status.successful", Extract::Int("/status/succeeded"))],
    refusal: Refusal::BatchJob,
};

static SIGNER_NAMED: SelectableFields = SelectableFields {
    fields: &[META[0], ("spec.signerName", Extract::Str("/spec/signerName"))],
    refusal: Refusal::NotSupported,
};

fn pointer_str(obj: &Value, ptr: &str) -> String {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl SelectableFields {
    /// The selectable fields of a kind, by API group ("" for core) and kind. Kinds without
    /// their own list (apps/v1 ReplicaSet among them, as upstream) allow only `metadata.name`
    /// and `metadata.namespace`.
    pub fn for_kind(group: &str, kind: &str) -> &'static SelectableFields {
        match (group, kind) {
            ("", "Pod") => &POD,
            ("", "Node") => &NODE,
            ("", "ReplicationController") => &REPLICATION_CONTROLLER,
            ("", "Event") => &CORE_EVENT,
            ("", "Namespace") => &NAMESPACE,
            ("", "Secret") => &SECRET,
            ("", "Service") => &SERVICE,
            ("batch", "Job") => &JOB,
            ("certificates.k8s.io", "CertificateSigningRequest" | "ClusterTrustBundle") => &SIGNER_NAMED,
            ("events.k8s.io", "Event") => &EVENTS_EVENT,
            _ => &DEFAULT,
        }
    }

    /// The field labels this kind accepts.
    pub fn labels(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|(l, _)| *l)
    }

    fn lookup(&self, label: &str) -> Option<Extract> {
        self.fields.iter().find(|(l, _)| *l == label).map(|(_, e)| *e)
    }

    fn refuse(&self, label: &str) -> SelectorError {
        SelectorError::FieldNotSupported(match self.refusal {
            Refusal::NotSupported => format!("field label not supported: {label}"),
            Refusal::BatchJob => format!("field label {} not supported for batchv1.Job", go_quote(label)),
            Refusal::MetaOnly => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(label)
            ),
        })
    }

    /// Check every field of `selector` against this kind, rewriting old aliases, so the
    /// result can be matched against objects. The first refused field (in the selector's
    /// sorted order) is the error, as upstream reports it.
    pub fn bind(&'static self, selector: &FieldSelector) -> Result<ResourceFieldSelector, SelectorError> {
        let mut requirements = Vec::with_capacity(selector.requirements.len());
        for r in &selector.requirements {
            let field = match self.lookup(&r.field) {
                Some(Extract::Alias(target)) => target.to_string(),
                Some(_) => r.field.clone(),
                None => return Err(self.refuse(&r.field)),
            };
            requirements.push(FieldRequirement { field, operator: r.operator, value: r.value.clone() });
        }
        Ok(ResourceFieldSelector { fields: self, selector: FieldSelector { requirements } })
    }

    /// The value of field `label` in `obj` as upstream's field set holds it, or `None` when
    /// the kind has no such selectable field.
    pub fn field_value(&self, label: &str, obj: &Value) -> Option<String> {
        let extract = self.lookup(label)?;
        Some(match extract {
            Extract::Str(p) => pointer_str(obj, p),
            Extract::Bool(p) => obj.pointer(p).and_then(Value::as_bool).unwrap_or(false).to_string(),
            Extract::Int(p) => obj.pointer(p).and_then(Value::as_i64).unwrap_or(0).to_string(),
            Extract::PodIp => obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .or_else(|| obj.pointer("/status/podIP").and_then(Value::as_str))
                .unwrap_or_default()
                .to_string(),
            Extract::Unset => String::new(),
            Extract::CoreEventSource => {
                let component = pointer_str(obj, "/source/component");
                if component.is_empty() {
                    pointer_str(obj, "/reportingComponent")
                } else {
                    component
                }
            }
            Extract::EventsEventSource => {
                let component = pointer_str(obj, "/deprecatedSource/component");
                if component.is_empty() {
                    pointer_str(obj, "/reportingController")
                } else {
                    component
                }
            }
            Extract::Alias(target) => return self.field_value(target, obj),
        })
    }
}

/// A field selector checked against one kind's selectable fields, ready to match objects.
#[derive(Debug, Clone)]
pub struct ResourceFieldSelector {
    fields: &'static SelectableFields,
    selector: FieldSelector,
}

impl ResourceFieldSelector {
    /// The selector, with aliases rewritten.
    pub fn selector(&self) -> &FieldSelector {
        &self.selector
    }

    /// Whether the JSON object `obj` (of the kind this was bound to) is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.selector.matches_with(|label| self.fields.field_value(label, obj))
    }

    /// Whether this selects every object.
    pub fn is_everything(&self) -> bool {
        self.selector.is_everything()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        FieldSelector::parse(s).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{s:?} parsed"))
    }

    #[test]
    fn grammar() {
        assert!(parse("").is_everything());
        assert!(parse(",,").is_everything());
        assert_eq!(parse("b=2,a==1,c!=3").to_string(), "a=1,b=2,c!=3");
        let s = parse(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        let s = parse(r"a!=\=b");
        assert_eq!(s.requirements()[0].operator, FieldOperator::NotEquals);
        assert_eq!(s.requirements()[0].value, "=b");
        assert_eq!(err("a!==b"), "invalid field selector: unescaped character in value: 61");
        assert_eq!(parse("a=").requirements()[0].value, "");
        assert_eq!(parse(" a = b ").requirements()[0].field, " a ");
    }

    #[test]
    fn grammar_errors() {
        assert_eq!(err("a"), "invalid selector: 'a'; can't understand 'a'");
        assert_eq!(err("x=1,b"), "invalid selector: 'x=1,b'; can't understand 'b'");
        assert_eq!(err(r"a=b\x"), r"invalid field selector: invalid escape sequence: \x");
        assert_eq!(err(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
        assert_eq!(err("a=b=c"), "invalid field selector: unescaped character in value: 61");
    }

    #[test]
    fn pods() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}]}
        });
        let f = SelectableFields::for_kind("", "Pod");
        let sel = |s: &str| f.bind(&parse(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(sel("spec.nodeName=n1").matches(&pod));
        assert!(sel("spec.host=n1").matches(&pod));
        assert_eq!(sel("spec.host=n1").selector().to_string(), "spec.nodeName=n1");
        assert!(sel("status.phase!=Pending,metadata.namespace=default").matches(&pod));
        assert!(sel("spec.hostNetwork=true").matches(&pod));
        assert!(!sel("spec.hostNetwork=false").matches(&pod));
        assert!(sel("status.podIP=10.0.0.9").matches(&pod));
        assert!(sel("status.podIPs=").matches(&pod));
        assert!(sel("spec.schedulerName=").matches(&pod));
        assert!(!sel("metadata.name=web-2").matches(&pod));
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(sel("spec.nodeName=").matches(&unscheduled));
        assert!(sel("spec.hostNetwork=false").matches(&unscheduled));
        assert_eq!(
            f.bind(&parse("spec.containers=x")).err().map(|e| e.to_string()),
            Some("field label not supported: spec.containers".to_string())
        );
    }

    #[test]
    fn refusals_per_kind() {
        let refuse = |g: &str, k: &str, s: &str| {
            SelectableFields::for_kind(g, k).bind(&parse(s)).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(
            refuse("apps", "ReplicaSet", "status.replicas=0"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            refuse("batch", "Job", "status.failed=1"),
            "field label \"status.failed\" not supported for batchv1.Job"
        );
        assert_eq!(refuse("", "Node", "metadata.namespace=x"), "field label not supported: metadata.namespace");
        assert_eq!(refuse("", "Namespace", "metadata.namespace=x"), "field label not supported: metadata.namespace");
        assert_eq!(
            refuse("events.k8s.io", "Event", "involvedObject.name=x"),
            "field label not supported: involvedObject.name"
        );
        // The first refused field in sorted order is the one reported.
        assert_eq!(refuse("", "Pod", "zz=1,aa=2"), "field label not supported: aa");
        assert!(SelectableFields::for_kind("apps", "Deployment").bind(&parse("metadata.name=x")).is_ok());
    }

    #[test]
    fn other_kinds() {
        let job = json!({"metadata": {"name": "j", "namespace": "d"}, "status": {"succeeded": 3}});
        let f = SelectableFields::for_kind("batch", "Job");
        assert!(f.bind(&parse("status.successful=3")).map(|s| s.matches(&job)).unwrap_or(false));
        let fresh = json!({"metadata": {"name": "j"}});
        assert!(f.bind(&parse("status.successful=0")).map(|s| s.matches(&fresh)).unwrap_or(false));

        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        let f = SelectableFields::for_kind("", "Node");
        assert!(f.bind(&parse("spec.unschedulable=true")).map(|s| s.matches(&node)).unwrap_or(false));

        let ev = json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p"},
                        "reason": "Started", "type": "Normal", "reportingComponent": "kubelet"});
        let f = SelectableFields::for_kind("", "Event");
        let m = |s: &str| f.bind(&parse(s)).map(|sel| sel.matches(&ev)).unwrap_or(false);
        assert!(m("involvedObject.kind=Pod,involvedObject.name=p,type=Normal"));
        assert!(m("source=kubelet"));
        assert!(!m("reason=Killing"));

        let ev2 = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod"}, "reportingController": "k3rs",
                         "deprecatedSource": {"component": "old"}});
        let f = SelectableFields::for_kind("events.k8s.io", "Event");
        let m = |s: &str| f.bind(&parse(s)).map(|sel| sel.matches(&ev2)).unwrap_or(false);
        assert!(m("regarding.kind=Pod,reportingController=k3rs,source=old"));

        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        let f = SelectableFields::for_kind("", "Secret");
        assert!(f.bind(&parse("type=kubernetes.io/tls")).map(|s| s.matches(&secret)).unwrap_or(false));

        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10"}});
        let f = SelectableFields::for_kind("", "Service");
        assert!(f
            .bind(&parse("spec.type=NodePort,spec.clusterIP=10.43.0.10"))
            .map(|s| s.matches(&svc))
            .unwrap_or(false));

        let ns = json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}});
        let f = SelectableFields::for_kind("", "Namespace");
        assert!(f.bind(&parse("status.phase=Terminating")).map(|s| s.matches(&ns)).unwrap_or(false));

        let rc = json!({"metadata": {"name": "a"}, "status": {"replicas": 2}});
        let f = SelectableFields::for_kind("", "ReplicationController");
        assert!(f.bind(&parse("status.replicas=2")).map(|s| s.matches(&rc)).unwrap_or(false));

        let csr = json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        let f = SelectableFields::for_kind("certificates.k8s.io", "CertificateSigningRequest");
        assert!(f
            .bind(&parse("spec.signerName=kubernetes.io/kubelet-serving"))
            .map(|s| s.matches(&csr))
            .unwrap_or(false));

        // A cluster-scoped kind without its own list accepts metadata.namespace, always "".
        let f = SelectableFields::for_kind("rbac.authorization.k8s.io", "ClusterRole");
        let cr = json!({"metadata": {"name": "admin"}});
        assert!(f.bind(&parse("metadata.namespace=")).map(|s| s.matches(&cr)).unwrap_or(false));
    }
}
