//! Server-side printing: objects as a `meta.k8s.io` `Table`, the form `kubectl get` asks
//! for, with upstream's columns and cells for every built-in kind.
//!
//! Pure functions, no I/O. The handler asks [`wants_table`] whether the `Accept` header
//! picks a Table (kubectl sends
//! `application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`),
//! parses the `includeObject` query parameter with [`IncludeObject::parse`], and renders a
//! list with [`render`] / [`render_with`], a single object with [`render_object`], and each
//! watch event's object with [`render_watch_row`] (column definitions only in the first
//! event, as upstream streams them). Every column is filled, the `-o wide` ones
//! (priority 1) included: kubectl drops those itself. Ages are measured against the `now`
//! passed in.
//! The answer's `Content-Type` is plain `application/json`, as upstream's.
//!
//! Kinds with no printer upstream (roles, cluster roles, limit ranges, CRDs, ...) get the
//! default table: NAME and CREATED AT.

mod accept;
mod fields;
mod printers;
mod quantity;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

pub use accept::{negotiate, wants_table, NotAcceptable, Output};
pub use fields::human_duration;
pub use printers::{Column, Row};

/// The version of `meta.k8s.io` a Table (or a PartialObjectMetadata) is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableVersion {
    /// `meta.k8s.io/v1`
    V1,
    /// `meta.k8s.io/v1beta1`, for clients older than kubectl 1.15.
    V1Beta1,
}

impl TableVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub fn api_version(self) -> &'static str {
        match self {
            TableVersion::V1 => "meta.k8s.io/v1",
            TableVersion::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IncludeObject {
    /// `None`: `object` is null.
    None,
    /// `Object`: the whole object.
    Object,
    /// `Metadata` (the default): a `PartialObjectMetadata` with the object's metadata,
    /// which kubectl reads for `-A` (the namespace), `--show-labels` and `-L`.
    #[default]
    Metadata,
}

/// Why the table options of a request are not acceptable (a 400 Bad Request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// `includeObject` is not `None`, `Object` or `Metadata`.
    #[error("unrecognized includeObject value: {0:?}")]
    UnknownIncludeObject(String),
}

impl IncludeObject {
    /// The `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, TableError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(TableError::UnknownIncludeObject(other.to_string())),
        }
    }
}

/// How to render a Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableOptions {
    /// The `meta.k8s.io` version asked for.
    pub version: TableVersion,
    /// What each row carries.
    pub include: IncludeObject,
    /// Whether to send the column definitions; upstream leaves them out of every watch
    /// event but the first.
    pub headers: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions { version: TableVersion::V1, include: IncludeObject::Metadata, headers: true }
    }
}

/// The column definitions of `group`/`kind`, as upstream serves them; the default table's
/// (Name, Created At) for kinds without a printer.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    printers::lookup(group, kind).map_or(printers::DEFAULT_COLUMNS, |p| p.columns)
}

/// The row of one object: its cells and row conditions, before the object is attached.
pub fn row(group: &str, kind: &str, object: &Value, now: OffsetDateTime) -> Row {
    match printers::lookup(group, kind) {
        Some(p) => (p.row)(object, &printers::Cx { now, group: p.group }),
        None => printers::default_row(object),
    }
}

/// A list of `kind` objects (of `group`/`version`, JSON as stored, with metadata) as a
/// `meta.k8s.io/v1` Table with column definitions. `list_meta` is the list's metadata:
/// its `resourceVersion`, `continue` and `remainingItemCount` are carried over.
pub fn render(
    group: &str,
    version: &str,
    kind: &str,
    objects: &[Value],
    list_meta: &Value,
    include: IncludeObject,
    now: OffsetDateTime,
) -> Value {
    render_with(group, version, kind, objects, list_meta, TableOptions { include, ..TableOptions::default() }, now)
}

/// [`render`] with every option: the Table version and whether to send column definitions.
pub fn render_with(
    group: &str,
    version: &str,
    kind: &str,
    objects: &[Value],
    list_meta: &Value,
    options: TableOptions,
    now: OffsetDateTime,
) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row_json(group, version, kind, o, options, now)).collect();
    // The default table convertor leaves an empty list's rows unset.
    let rows =
        if rows.is_empty() && printers::lookup(group, kind).is_none() { Value::Null } else { Value::Array(rows) };
    table(kind_columns(group, kind, options), list_metadata(list_meta), rows, options.version)
}

/// One object as a Table, as upstream answers a GET of it: the metadata's
/// `resourceVersion` is the object's.
pub fn render_object(
    group: &str,
    version: &str,
    kind: &str,
    object: &Value,
    include: IncludeObject,
    table_version: TableVersion,
    now: OffsetDateTime,
) -> Value {
    let options = TableOptions { version: table_version, include, headers: true };
    render_watch_row(group, version, kind, object, options, now)
}

/// The Table standing for a watch event's object: one row, the object's
/// `resourceVersion`, and column definitions only when `options.headers` is set (upstream
/// sends them with the first event of a watch and leaves them out afterwards).
pub fn render_watch_row(
    group: &str,
    version: &str,
    kind: &str,
    object: &Value,
    options: TableOptions,
    now: OffsetDateTime,
) -> Value {
    let mut meta = Map::new();
    if let Some(rv) = fields::opt_text(object, &["metadata", "resourceVersion"]).filter(|rv| !rv.is_empty()) {
        meta.insert("resourceVersion".to_string(), Value::from(rv));
    }
    let rows = Value::Array(vec![row_json(group, version, kind, object, options, now)]);
    table(kind_columns(group, kind, options), Value::Object(meta), rows, options.version)
}

fn kind_columns(group: &str, kind: &str, options: TableOptions) -> Value {
    if !options.headers {
        return Value::Null;
    }
    Value::Array(
        columns(group, kind)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// The list metadata a Table carries: resourceVersion, continue, remainingItemCount.
fn list_metadata(list_meta: &Value) -> Value {
    let mut meta = Map::new();
    for key in ["resourceVersion", "continue"] {
        if let Some(v) = list_meta.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            meta.insert(key.to_string(), Value::from(v));
        }
    }
    if let Some(n) = list_meta.get("remainingItemCount").and_then(Value::as_i64) {
        meta.insert("remainingItemCount".to_string(), Value::from(n));
    }
    Value::Object(meta)
}

fn table(columns: Value, metadata: Value, rows: Value, version: TableVersion) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": version.api_version(),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row_json(
    group: &str,
    version: &str,
    kind: &str,
    object: &Value,
    options: TableOptions,
    now: OffsetDateTime,
) -> Value {
    let Row { cells, conditions } = row(group, kind, object, now);
    let attached = match options.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => {
            let mut full = object.clone();
            if let Some(map) = full.as_object_mut() {
                let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
                map.entry("apiVersion").or_insert_with(|| Value::from(api_version));
                map.entry("kind").or_insert_with(|| Value::from(kind));
            }
            full
        }
        IncludeObject::Metadata => partial_object(object, options.version),
    };
    let mut row = Map::new();
    row.insert("cells".to_string(), Value::Array(cells));
    if !conditions.is_empty() {
        row.insert("conditions".to_string(), Value::Array(conditions));
    }
    row.insert("object".to_string(), attached);
    Value::Object(row)
}

/// An object's metadata as a `PartialObjectMetadata`.
pub fn partial_object(object: &Value, version: TableVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list as a `PartialObjectMetadataList`: its items' metadata, and its own `ListMeta`.
pub fn partial_list(list: &Value, version: TableVersion) -> Value {
    let items: Vec<Value> =
        list.get("items").and_then(Value::as_array).into_iter().flatten().map(|o| partial_object(o, version)).collect();
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": version.api_version(),
        "metadata": list.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "items": items,
    })
}

#[cfg(test)]
mod tests;
