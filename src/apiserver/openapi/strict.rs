//! Strict field validation (`fieldValidation=Strict` or `Warn`): the fields of a request body
//! the schema of its kind does not know, and the fields that appear twice, reported with the
//! paths upstream's strict JSON decoder gives them: struct fields and map keys joined with
//! `.`, list elements as `[i]` (`unknown field "spec.template.spec.containers[0].foo"`,
//! `duplicate field "metadata.name"`).
//!
//! As upstream's decoder: nothing is checked inside the values Go decodes by hand
//! (int-or-string, quantities, times, `RawExtension`, `FieldsV1`, the JSON values and
//! schema-or-array unions of CRD schemas); a field is looked up with its exact case; a field
//! the schema does not know is reported once however often it appears, and not looked into;
//! a value of the wrong type is a decoding error, not a strict one, and is skipped here.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use super::schemas::{self, Base, V3_REF_PREFIX};
use crate::domain::quote::go_quote;

/// How deep the raw scanner follows nesting; deeper values are skipped (serde_json already
/// refuses documents nested beyond 128 levels).
const MAX_DEPTH: usize = 512;
/// Upstream stops collecting strict errors after this many.
const MAX_ERRORS: usize = 100;

/// The shape of a schema, as far as strict decoding cares.
#[derive(Debug)]
enum Node {
    /// Anything goes (scalars, hand-decoded types).
    Any,
    /// A definition, by name.
    Ref(String),
    /// A struct: its field names and their shapes.
    Struct(HashMap<String, Node>),
    /// A map: the shape of its values.
    Map(Box<Node>),
    /// A list: the shape of its elements.
    Array(Box<Node>),
}

struct Shapes {
    definitions: HashMap<String, Node>,
    /// `(group, version, kind)` → definition name.
    kinds: HashMap<(String, String, String), String>,
}

static SHAPES: LazyLock<Shapes> = LazyLock::new(|| match schemas::base() {
    Ok(base) => Shapes::from_base(base),
    Err(e) => {
        // The embedded data is checked by the unit tests; reaching this is a build defect.
        tracing::error!(error = %e, "strict field validation has no schemas: nothing will be reported");
        Shapes { definitions: HashMap::new(), kinds: HashMap::new() }
    }
});

impl Shapes {
    fn from_base(base: Base) -> Self {
        let mut definitions: HashMap<String, Node> =
            base.definitions.iter().map(|(name, schema)| (name.clone(), node(name, schema))).collect();
        let mut kinds = HashMap::new();
        for k in &base.kinds {
            kinds.insert((k.group.clone(), k.version.clone(), k.kind.clone()), k.definition.clone());
        }
        // `<Kind>List`: apiVersion, kind, metadata (ListMeta) and items of the kind.
        for r in crate::apiserver::discovery::resources().filter(|r| r.supports("list")) {
            let Some(def) = kinds.get(&(r.group.to_string(), r.version.to_string(), r.kind.to_string())).cloned()
            else {
                continue;
            };
            let Some((package, _)) = def.rsplit_once('.') else { continue };
            let list_def = format!("{package}.{}", r.list_kind());
            let fields = HashMap::from([
                ("apiVersion".to_string(), Node::Any),
                ("kind".to_string(), Node::Any),
                ("metadata".to_string(), Node::Ref(schemas::LIST_META.to_string())),
                ("items".to_string(), Node::Array(Box::new(Node::Ref(def)))),
            ]);
            definitions.insert(list_def.clone(), Node::Struct(fields));
            kinds.insert((r.group.to_string(), r.version.to_string(), r.list_kind()), list_def);
        }
        Shapes { definitions, kinds }
    }

    fn root(&self, group: &str, version: &str, kind: &str) -> Option<Node> {
        self.kinds.get(&(group.to_string(), version.to_string(), kind.to_string())).map(|d| Node::Ref(d.clone()))
    }

    /// Follows references to a non-reference shape.
    fn resolve<'a>(&'a self, mut n: &'a Node) -> &'a Node {
        // Definitions never reference each other in a cycle of bare references; the bound
        // only guards against a defect in the embedded data.
        for _ in 0..16 {
            match n {
                Node::Ref(name) => match self.definitions.get(name) {
                    Some(d) => n = d,
                    None => return &Node::Any,
                },
                other => return other,
            }
        }
        &Node::Any
    }
}

fn node(name: &str, schema: &Value) -> Node {
    if schemas::OPAQUE.contains(&name) {
        return Node::Any;
    }
    shape(schema)
}

fn shape(schema: &Value) -> Node {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return reference(r);
    }
    if let Some([only]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return shape(only);
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        return Node::Struct(props.iter().map(|(k, v)| (k.clone(), shape(v))).collect());
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => Node::Array(Box::new(schema.get("items").map_or(Node::Any, shape))),
        Some("object") => match schema.get("additionalProperties") {
            Some(v @ Value::Object(_)) => Node::Map(Box::new(shape(v))),
            _ => Node::Any,
        },
        _ => Node::Any,
    }
}

fn reference(r: &str) -> Node {
    let name = r.strip_prefix("#/definitions/").or_else(|| r.strip_prefix(V3_REF_PREFIX)).unwrap_or(r);
    if schemas::OPAQUE.contains(&name) {
        Node::Any
    } else {
        Node::Ref(name.to_string())
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrictErrorKind {
    /// The schema has no such field.
    Unknown,
    /// The field appears more than once in its object.
    Duplicate,
}

/// One strict decoding error; `Display` gives upstream's text (`unknown field "spec.foo"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StrictError {
    pub kind: StrictErrorKind,
    /// The field's path: `spec.template.spec.containers[0].foo`.
    pub path: String,
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StrictErrorKind::Unknown => "unknown field",
            StrictErrorKind::Duplicate => "duplicate field",
        };
        write!(f, "{what} {}", go_quote(&self.path))
    }
}

/// The errors joined as upstream's strict decoding error message lists them
/// (`unknown field "a", duplicate field "b"`), to follow `strict decoding error: `.
pub fn join(errors: &[StrictError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of `object` (a `group/version` `kind`) its schema does not know, as paths.
/// The keys of a parsed value have lost their order, so the paths come sorted by key at each
/// level; use [`strict_errors`] on the raw body for upstream's document order and for
/// duplicates. Empty when the kind is not a served one.
pub fn unknown_fields(group: &str, version: &str, kind: &str, object: &Value) -> Vec<String> {
    let shapes = &*SHAPES;
    let Some(root) = shapes.root(group, version, kind) else { return Vec::new() };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk_value(shapes, &root, object, String::new(), &mut out, &mut seen);
    out
}

fn walk_value(shapes: &Shapes, n: &Node, v: &Value, path: String, out: &mut Vec<String>, seen: &mut HashSet<String>) {
    if out.len() >= MAX_ERRORS {
        return;
    }
    match (shapes.resolve(n), v) {
        (Node::Struct(fields), Value::Object(map)) => {
            for (k, v) in map {
                let p = child(&path, k);
                match fields.get(k) {
                    Some(f) => walk_value(shapes, f, v, p, out, seen),
                    None => {
                        if seen.insert(p.clone()) && out.len() < MAX_ERRORS {
                            out.push(p);
                        }
                    }
                }
            }
        }
        (Node::Map(values), Value::Object(map)) => {
            for (k, v) in map {
                walk_value(shapes, values, v, child(&path, k), out, seen);
            }
        }
        (Node::Array(items), Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                walk_value(shapes, items, v, format!("{path}[{i}]"), out, seen);
            }
        }
        _ => {}
    }
}

/// The duplicate fields of a raw JSON body, in document order, without a schema: every
/// object's keys are checked (including inside values upstream decodes loosely; use
/// [`strict_errors`] for upstream's exact report). Scanning stops at the first syntax
/// error.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut scanner = Scanner { data: raw, pos: 0, errors: Vec::new(), seen: HashSet::new(), shapes: None };
    scanner.value(None, String::new(), 0);
    scanner.errors.into_iter().filter(|e| e.kind == StrictErrorKind::Duplicate).map(|e| e.path).collect()
}

/// The unknown and duplicate fields of a raw JSON body of `group/version` `kind`, in
/// document order, exactly as upstream's strict decoder reports them (at most 100, each
/// once). Empty when the kind is not a served one; scanning stops at the first syntax error
/// (the body's parse reports that).
pub fn strict_errors(group: &str, version: &str, kind: &str, raw: &[u8]) -> Vec<StrictError> {
    let shapes = &*SHAPES;
    let Some(root) = shapes.root(group, version, kind) else { return Vec::new() };
    let mut scanner = Scanner { data: raw, pos: 0, errors: Vec::new(), seen: HashSet::new(), shapes: Some(shapes) };
    scanner.value(Some(&root), String::new(), 0);
    scanner.errors
}

/// A JSON scanner over the raw bytes that walks the schema alongside. `shape` `None` means
/// "check duplicates of every object, know no schema" ([`duplicate_fields`]); with shapes,
/// `Some(Node::Any)` means "skip".
struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
    errors: Vec<StrictError>,
    seen: HashSet<StrictError>,
    shapes: Option<&'a Shapes>,
}

/// A scan failed: the input is not JSON. Nothing more is reported.
struct Malformed;

impl<'a> Scanner<'a> {
    fn report(&mut self, kind: StrictErrorKind, path: String) {
        let e = StrictError { kind, path };
        if self.errors.len() < MAX_ERRORS && self.seen.insert(e.clone()) {
            self.errors.push(e);
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.data.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.data.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Scans one value. `shape`: `None` without schema; else the node to check against.
    fn value(&mut self, shape: Option<&Node>, path: String, depth: usize) {
        let _ = self.value_inner(shape, path, depth);
    }

    fn value_inner(&mut self, shape: Option<&Node>, path: String, depth: usize) -> Result<(), Malformed> {
        let resolved = match (shape, self.shapes) {
            (Some(n), Some(shapes)) => Some(shapes.resolve(n)),
            _ => None,
        };
        match self.peek() {
            Some(b'{') if depth < MAX_DEPTH => self.object(shape.is_none(), resolved, path, depth),
            Some(b'[') if depth < MAX_DEPTH => {
                let items = match resolved {
                    Some(Node::Array(items)) => Some(&**items),
                    Some(_) => Some(&Node::Any),
                    None => None,
                };
                self.array(items, path, depth)
            }
            Some(b'{' | b'[') => self.skip_nested(),
            Some(b'"') => self.string().map(drop),
            Some(_) => self.scalar(),
            None => Err(Malformed),
        }
    }

    fn object(&mut self, schemaless: bool, shape: Option<&Node>, path: String, depth: usize) -> Result<(), Malformed> {
        self.expect(b'{')?;
        let mut keys: HashSet<String> = HashSet::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Malformed);
            }
            let key = self.string()?;
            self.expect(b':')?;
            let p = child(&path, &key);
            match shape {
                Some(Node::Struct(fields)) => match fields.get(&key) {
                    Some(f) => {
                        if !keys.insert(key) {
                            self.report(StrictErrorKind::Duplicate, p.clone());
                        }
                        self.value_inner(Some(f), p, depth + 1)?;
                    }
                    None => {
                        self.report(StrictErrorKind::Unknown, p);
                        self.skip_value()?;
                    }
                },
                Some(Node::Map(values)) => {
                    if !keys.insert(key) {
                        self.report(StrictErrorKind::Duplicate, p.clone());
                    }
                    self.value_inner(Some(values), p, depth + 1)?;
                }
                Some(_) => self.skip_value()?,
                None if schemaless => {
                    if !keys.insert(key) {
                        self.report(StrictErrorKind::Duplicate, p.clone());
                    }
                    self.value_inner(None, p, depth + 1)?;
                }
                None => self.skip_value()?,
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    fn array(&mut self, items: Option<&Node>, path: String, depth: usize) -> Result<(), Malformed> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut i = 0usize;
        loop {
            match items {
                Some(Node::Any) => self.skip_value()?,
                other => self.value_inner(other, format!("{path}[{i}]"), depth + 1)?,
            }
            i += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// Skips a value without looking inside.
    fn skip_value(&mut self) -> Result<(), Malformed> {
        match self.peek() {
            Some(b'{' | b'[') => self.skip_nested(),
            Some(b'"') => self.string().map(drop),
            Some(_) => self.scalar(),
            None => Err(Malformed),
        }
    }

    /// Skips an object or array by counting brackets outside strings (no recursion, so any
    /// depth is fine).
    fn skip_nested(&mut self) -> Result<(), Malformed> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.pos += 1;
                }
                Some(b'}' | b']') => {
                    depth = depth.checked_sub(1).ok_or(Malformed)?;
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.pos += 1,
                None => return Err(Malformed),
            }
        }
    }

    fn scalar(&mut self) -> Result<(), Malformed> {
        let start = self.pos;
        while let Some(b) = self.data.get(self.pos) {
            if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            Err(Malformed)
        } else {
            Ok(())
        }
    }

    /// Reads a string, unescaping it (keys are compared unescaped, as Go does).
    fn string(&mut self) -> Result<String, Malformed> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = *self.data.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|_| Malformed),
                b'\\' => {
                    let e = *self.data.get(self.pos).ok_or(Malformed)?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xD800..0xDC00).contains(&c) && self.data.get(self.pos..self.pos + 2) == Some(b"\\u") {
                                let save = self.pos;
                                self.pos += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                                } else {
                                    self.pos = save;
                                }
                            }
                            let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(Malformed),
                    }
                }
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Malformed> {
        let digits = self.data.get(self.pos..self.pos + 4).ok_or(Malformed)?;
        let s = std::str::from_utf8(digits).map_err(|_| Malformed)?;
        let v = u32::from_str_radix(s, 16).map_err(|_| Malformed)?;
        self.pos += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strict(group: &str, version: &str, kind: &str, raw: &str) -> Vec<String> {
        strict_errors(group, version, kind, raw.as_bytes()).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn known_objects_have_no_unknown_fields() {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a/b": "c"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "500m", "memory": 128}, "requests": {"cpu": 0.5}},
                        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    }]},
                },
            },
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-01T00:00:00Z"}]},
        });
        assert_eq!(unknown_fields("apps", "v1", "Deployment", &deployment), Vec::<String>::new());
        let raw = serde_json::to_vec(&deployment).unwrap_or_default();
        assert!(strict_errors("apps", "v1", "Deployment", &raw).is_empty());
    }

    #[test]
    fn unknown_fields_at_every_level() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "foo": 1,
            "metadata": {"name": "p", "nmae": "typo", "labels": {"any-key": "is fine"}},
            "spec": {
                "containers": [
                    {"name": "a", "image": "x"},
                    {"name": "b", "image": "y", "imagePullPolicyx": "Always", "ports": [{"containerPort": 1, "hostPrt": 2}]},
                ],
                "nodeSelector": {"disk": "ssd"},
                "overhead": {"cpu": "1"},
            },
        });
        assert_eq!(
            unknown_fields("", "v1", "Pod", &pod),
            vec!["foo", "metadata.nmae", "spec.containers[1].imagePullPolicyx", "spec.containers[1].ports[0].hostPrt",]
        );
    }

    #[test]
    fn int_or_string_quantities_and_opaque_values_are_not_looked_into() {
        // A value of the wrong type is a decoding error, not a strict one.
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": {"weird": 1}}], "selector": "not-a-map"}});
        assert!(unknown_fields("", "v1", "Service", &svc).is_empty());
        let cr = json!({"data": {"anything": {"goes": true}}, "revision": 1});
        assert!(unknown_fields("apps", "v1", "ControllerRevision", &cr).is_empty());
        let q = json!({"spec": {"hard": {"pods": {"not": "a quantity"}}}});
        assert!(unknown_fields("", "v1", "ResourceQuota", &q).is_empty());
    }

    #[test]
    fn maps_of_objects_use_dotted_keys() {
        // CRD schemas: `properties` is a map of schemas, checked; `items` is a union Go decodes
        // loosely, not checked.
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "typo": 1, "items": {"whatever": 1}}},
        }}}]}});
        assert_eq!(
            unknown_fields("apiextensions.k8s.io", "v1", "CustomResourceDefinition", &crd),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties.spec.typo"]
        );
    }

    #[test]
    fn arrays_of_objects_and_lists() {
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "items": [{"data": {"a": "b"}}, {"datta": {}}]});
        assert_eq!(unknown_fields("", "v1", "ConfigMapList", &list), vec!["items[1].datta"]);
        let role = json!({"rules": [{"verbs": ["get"], "resources": ["pods"]}, {"verb": ["get"]}]});
        assert_eq!(unknown_fields("rbac.authorization.k8s.io", "v1", "Role", &role), vec!["rules[1].verb"]);
    }

    #[test]
    fn unknown_kinds_report_nothing() {
        assert!(unknown_fields("apps", "v1", "Nope", &json!({"x": 1})).is_empty());
        assert!(strict_errors("apps", "v9", "Deployment", b"{\"x\":1}").is_empty());
    }

    #[test]
    fn raw_scan_reports_in_document_order_with_duplicates() {
        let raw = r#"{"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},
            "spec":{"zzz":1,"replicas":1,"aaa":2,"zzz":3,
                    "template":{"spec":{"containers":[{"name":"c","image":"i","foo":{"name":1,"name":2}}]}}}}"#;
        assert_eq!(
            strict("apps", "v1", "Deployment", raw),
            vec![
                r#"duplicate field "metadata.name""#,
                r#"duplicate field "metadata.labels.x""#,
                r#"unknown field "spec.zzz""#,
                r#"unknown field "spec.aaa""#,
                r#"unknown field "spec.template.spec.containers[0].foo""#,
            ]
        );
    }

    #[test]
    fn raw_scan_unescapes_keys_and_is_case_sensitive() {
        let raw = r#"{"metadata":{"na\u006de":"a","Name":"b","name":"c"}}"#;
        assert_eq!(
            strict("", "v1", "ConfigMap", raw),
            vec![r#"unknown field "metadata.Name""#, r#"duplicate field "metadata.name""#]
        );
    }

    #[test]
    fn nothing_is_checked_inside_opaque_values() {
        let raw =
            r#"{"data":{"a":1,"a":2},"revision":1,"metadata":{"managedFields":[{"fieldsV1":{"f:x":{},"f:x":{}}}]}}"#;
        assert!(strict_errors("apps", "v1", "ControllerRevision", raw.as_bytes()).is_empty());
    }

    #[test]
    fn schemaless_duplicates() {
        let raw = br#"{"a":1,"b":{"c":[{"d":1,"d":2}],"c":0},"a":[]}"#;
        assert_eq!(duplicate_fields(raw), vec!["b.c[0].d", "b.c", "a"]);
        assert!(duplicate_fields(br#"{"a":"#).is_empty());
        assert!(duplicate_fields(b"[1,2,{}]").is_empty());
    }

    #[test]
    fn messages_quote_as_go_does() {
        let e = StrictError { kind: StrictErrorKind::Unknown, path: "spec.a\"b\\c\n".to_string() };
        assert_eq!(e.to_string(), r#"unknown field "spec.a\"b\\c\n""#);
        let errors = vec![
            StrictError { kind: StrictErrorKind::Unknown, path: "spec.foo".to_string() },
            StrictError { kind: StrictErrorKind::Duplicate, path: "metadata.name".to_string() },
        ];
        assert_eq!(join(&errors), r#"unknown field "spec.foo", duplicate field "metadata.name""#);
    }

    #[test]
    fn malformed_and_deep_input_does_not_panic() {
        for raw in
            [&b""[..], b"{", b"{\"a\"", b"{\"a\":}", b"{\"a\":1,}", b"\"\\u12", b"[[[[", b"}}}", b"{\"\\ud800\":1}"]
        {
            let _ = strict_errors("", "v1", "Pod", raw);
            let _ = duplicate_fields(raw);
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(duplicate_fields(deep.as_bytes()).is_empty());
        let deep_obj = format!("{{\"spec\":{}1{}}}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
        assert_eq!(strict("", "v1", "Pod", &deep_obj), vec![r#"unknown field "spec.a""#]);
    }

    #[test]
    fn at_most_a_hundred_errors() {
        let fields: Vec<String> = (0..150).map(|i| format!("\"f{i}\":1")).collect();
        let raw = format!("{{{}}}", fields.join(","));
        assert_eq!(strict_errors("", "v1", "ConfigMap", raw.as_bytes()).len(), 100);
    }
}
