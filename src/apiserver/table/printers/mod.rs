//! One printer per built-in kind: its column definitions and a function from an object to
//! a row of cells, following upstream's server-side printers (every column is filled, the
//! `-o wide` ones included; kubectl hides the priority-1 columns itself).
//!
//! Kinds without a printer get the default table of NAME and CREATED AT, as upstream's
//! default table convertor does for roles, limit ranges and CRDs.

mod apps;
mod cluster;
mod core;
mod pod;

use serde_json::Value;
use time::OffsetDateTime;

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header, as upstream spells it (kubectl upper-cases it).
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer`, `boolean`, `date`.
    pub kind: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for the default columns, 1 for those only `-o wide` shows.
    pub priority: i32,
}

/// A row before the object is attached.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub cells: Vec<Value>,
    /// Row conditions (`Completed` for finished pods).
    pub conditions: Vec<Value>,
}

impl Row {
    pub(crate) fn new(cells: Vec<Value>) -> Row {
        Row { cells, conditions: Vec::new() }
    }
}

/// What a printer gets besides the object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cx {
    /// The clock ages are measured against.
    pub now: OffsetDateTime,
    /// The object's API group, for kinds whose shape differs between groups (events).
    pub group: &'static str,
}

/// How one kind is printed.
pub(crate) struct Printer {
    pub group: &'static str,
    pub kind: &'static str,
    pub columns: &'static [Column],
    pub row: fn(&Value, &Cx) -> Row,
}

/// The printer for `group`/`kind`, when upstream has one.
pub(crate) fn lookup(group: &str, kind: &str) -> Option<&'static Printer> {
    PRINTERS.iter().find(|p| p.group == group && p.kind == kind)
}

/// Every kind with its own printer.
#[cfg(test)]
pub(crate) fn all() -> &'static [Printer] {
    PRINTERS
}

static PRINTERS: &[Printer] = &[
    // core
    pod::POD,
    core::POD_TEMPLATE,
    core::REPLICATION_CONTROLLER,
    core::SERVICE,
    core::ENDPOINTS,
    core::NODE,
    core::EVENT,
    core::NAMESPACE,
    core::SECRET,
    core::SERVICE_ACCOUNT,
    core::PERSISTENT_VOLUME,
    core::PERSISTENT_VOLUME_CLAIM,
    core::COMPONENT_STATUS,
    core::CONFIG_MAP,
    core::RESOURCE_QUOTA,
    // apps, batch, autoscaling, policy
    apps::DEPLOYMENT,
    apps::REPLICA_SET,
    apps::STATEFUL_SET,
    apps::DAEMON_SET,
    apps::CONTROLLER_REVISION,
    apps::JOB,
    apps::CRON_JOB,
    apps::HPA,
    apps::SCALE,
    apps::PDB,
    // the rest
    core::EVENT_V1,
    cluster::INGRESS,
    cluster::INGRESS_CLASS,
    cluster::NETWORK_POLICY,
    cluster::SERVICE_CIDR,
    cluster::IP_ADDRESS,
    cluster::ROLE_BINDING,
    cluster::CLUSTER_ROLE_BINDING,
    cluster::STORAGE_CLASS,
    cluster::VOLUME_ATTACHMENT,
    cluster::CSI_NODE,
    cluster::CSI_DRIVER,
    cluster::CSI_STORAGE_CAPACITY,
    cluster::PRIORITY_CLASS,
    cluster::RUNTIME_CLASS,
    cluster::LEASE,
    cluster::ENDPOINT_SLICE,
    cluster::CSR,
    cluster::MUTATING_WEBHOOK,
    cluster::VALIDATING_WEBHOOK,
    cluster::VALIDATING_ADMISSION_POLICY,
];

/// The columns of the default table.
pub(crate) static DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        description: "When the object was created (metadata.creationTimestamp), RFC 3339 in UTC.",
        priority: 0,
    },
];

/// The default row: name and creation time.
pub(crate) fn default_row(o: &Value) -> Row {
    let created = super::fields::timestamp(o, &["metadata", "creationTimestamp"]);
    Row::new(vec![Value::from(super::fields::name(o)), Value::from(super::fields::rfc3339_seconds(created))])
}

// Column constructors, so the tables below read like upstream's.

pub(crate) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "The object's name (metadata.name), unique within its namespace.",
    priority: 0,
};

pub(crate) const AGE: Column = Column {
    name: "Age",
    kind: "string",
    format: "",
    description: "Time since the object was created (metadata.creationTimestamp).",
    priority: 0,
};

pub(crate) const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}

pub(crate) const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

pub(crate) const CONTAINERS: Column = wide("Containers", "string", "Names of the containers in the pod template.");
pub(crate) const IMAGES: Column = wide("Images", "string", "Images of the containers in the pod template.");
pub(crate) const SELECTOR: Column = wide("Selector", "string", "The label selector picking the pods.");

/// Cell helpers: upstream's cells are Go strings, int64s and bools.
pub(crate) fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

pub(crate) fn n(v: i64) -> Value {
    Value::from(v)
}

pub(crate) fn b(v: bool) -> Value {
    Value::Bool(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printer_is_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for p in all() {
            assert!(seen.insert((p.group, p.kind)), "{}/{} twice", p.group, p.kind);
            assert!(!p.columns.is_empty());
            assert!(p.columns.iter().filter(|c| c.format == "name").count() <= 1, "{}", p.kind);
            for c in p.columns {
                assert!(matches!(c.kind, "string" | "integer" | "boolean" | "date" | "number"), "{}", c.name);
                assert!(!c.description.is_empty());
            }
        }
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        let cx = Cx { now: OffsetDateTime::UNIX_EPOCH, group: "" };
        let empty = serde_json::json!({});
        for p in all() {
            let cx = Cx { group: p.group, ..cx };
            let row = (p.row)(&empty, &cx);
            assert_eq!(row.cells.len(), p.columns.len(), "{}/{}", p.group, p.kind);
        }
    }
}
