//! Label and field selectors: parsing the string forms clients send (`?labelSelector=`,
//! `?fieldSelector=`), converting a `metav1.LabelSelector`, and matching objects.
//!
//! Parsing, validation and the error texts follow upstream's so that `kubectl get -l` and
//! `--field-selector` fail with the messages a user knows. Field selectors are checked against
//! the fields each resource makes selectable ([`SelectableFields`]) before they are matched.

mod fields;
mod labels;

pub use fields::{
    escape_value, FieldOperator, FieldRequirement, FieldSelector, ResourceFieldSelector, SelectableFields,
};
pub use labels::{LabelSelector, Labels, Operator, Requirement};

/// A selector that could not be parsed, or names something the resource cannot select on.
///
/// The `Display` text is the message upstream's apiserver puts in its 400 `BadRequest`
/// Status, so callers wrap it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string is not valid syntax, or a key or value in it is invalid.
    #[error("{0}")]
    LabelSelectorParse(String),
    /// A `metav1.LabelSelector` has an invalid key, value or operator.
    #[error("{0}")]
    LabelSelectorConvert(String),
    /// The field selector string is not valid syntax or has a bad escape.
    #[error("{0}")]
    FieldSelectorParse(String),
    /// The field selector names a field the resource does not support selecting on.
    #[error("{0}")]
    FieldNotSupported(String),
}
