//! Protobuf message bytes to the JSON Go's encoder would write for the same object, driven
//! by the generated schema table.
//!
//! Go semantics followed: the last value of a repeated singular scalar wins; repeated
//! occurrences of a singular message merge (decoded as their concatenation); unknown fields
//! are skipped; fields absent from the wire are absent from the JSON; zero values of
//! non-pointer `omitempty` scalars are dropped, as Go's JSON encoder drops them.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::forms;
use super::schema::{self, Field, Form, Message, Ty};
use super::wire::{Reader, WireError, WireValue};

/// Messages nested deeper than this are refused, so hostile input cannot exhaust the stack.
pub(super) const MAX_DEPTH: usize = 100;

/// Why a message could not be decoded, and where (innermost segment last once reversed).
#[derive(Debug)]
pub(super) struct DecodeError {
    /// Path segments from the failure outwards.
    pub path: Vec<String>,
    pub reason: DecodeReason,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeReason {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("wire type does not match the field's type ({0})")]
    WrongWireType(&'static str),
    #[error("messages nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("embedded JSON is invalid: {0}")]
    EmbeddedJson(String),
    #[error("embedded protobuf object: {0}")]
    EmbeddedObject(String),
    #[error("{0}")]
    InvalidValue(String),
}

impl From<DecodeReason> for DecodeError {
    fn from(reason: DecodeReason) -> Self {
        DecodeError { path: Vec::new(), reason }
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeReason::Wire(e).into()
    }
}

impl DecodeError {
    fn at(mut self, segment: impl FnOnce() -> String) -> Self {
        self.path.push(segment());
        self
    }

    /// The path as `spec.template.spec.containers[0].image`.
    pub fn path_string(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            if !out.is_empty() && !seg.starts_with('[') {
                out.push('.');
            }
            out.push_str(seg);
        }
        if out.is_empty() {
            out.push_str("<root>");
        }
        out
    }
}

/// Decodes one message's bytes into JSON.
pub(super) fn decode_message(msg: &'static Message, bytes: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeReason::TooDeep.into());
    }
    let slots = collect(msg, bytes)?;
    match msg.form {
        Form::Fields => fields_object(msg, &slots, depth),
        form => special(msg, form, bytes, &slots, depth),
    }
}

/// The wire values of each known field, in order of appearance; unknown fields skipped.
fn collect<'a>(msg: &'static Message, bytes: &'a [u8]) -> Result<Vec<Vec<WireValue<'a>>>, DecodeError> {
    let mut slots = vec![Vec::new(); msg.fields.len()];
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        if let Some((i, _)) = msg.field(tag) {
            slots[i].push(value);
        }
    }
    Ok(slots)
}

fn fields_object(msg: &'static Message, slots: &[Vec<WireValue<'_>>], depth: usize) -> Result<Value, DecodeError> {
    let mut object = Map::new();
    let mut inlined = Vec::new();
    for (field, values) in msg.fields.iter().zip(slots) {
        let Some(value) = field_value(field, values, depth).map_err(|e| e.at(|| field.json.to_string()))? else {
            continue;
        };
        if field.has(Field::INLINE) {
            inlined.push(value);
        } else if !(field.has(Field::OMIT_ZERO) && is_zero(&value)) {
            object.insert(field.json.to_string(), value);
        }
    }
    // Go resolves a name clash in favour of the shallower field.
    for value in inlined {
        if let Value::Object(inner) = value {
            for (k, v) in inner {
                object.entry(k).or_insert(v);
            }
        }
    }
    Ok(Value::Object(object))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// The JSON of one field from all its wire values, `None` when it has none.
fn field_value(field: &Field, values: &[WireValue<'_>], depth: usize) -> Result<Option<Value>, DecodeError> {
    let Some(last) = values.last() else {
        return Ok(None);
    };
    if field.has(Field::MAP) {
        let mut object = Map::new();
        for value in values {
            let WireValue::Bytes(entry) = value else {
                return Err(DecodeReason::WrongWireType("map entry").into());
            };
            let (key, value) = map_entry(field.ty, entry, depth)?;
            object.insert(key, value);
        }
        return Ok(Some(Value::Object(object)));
    }
    if field.has(Field::REPEATED) {
        let mut items = Vec::with_capacity(values.len());
        for value in values {
            match (field.ty, value) {
                // Packed encoding of a repeated number: many values in one record.
                (Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double, WireValue::Bytes(packed)) => {
                    unpack(field.ty, packed, &mut items)?;
                }
                _ => {
                    let i = items.len();
                    items.push(scalar(field.ty, *value, depth).map_err(|e| e.at(|| format!("[{i}]")))?);
                }
            }
        }
        return Ok(Some(Value::Array(items)));
    }
    if let Ty::Message(index) = field.ty {
        return Ok(Some(merged_message(schema::message(index), values, depth)?));
    }
    scalar(field.ty, *last, depth).map(Some)
}

/// A singular message seen several times is the merge of all, which protobuf defines as
/// the decoding of their concatenation.
fn merged_message(msg: &'static Message, values: &[WireValue<'_>], depth: usize) -> Result<Value, DecodeError> {
    let mut parts = Vec::with_capacity(values.len());
    for value in values {
        let WireValue::Bytes(b) = value else {
            return Err(DecodeReason::WrongWireType("message").into());
        };
        parts.push(*b);
    }
    match parts.as_slice() {
        [one] => decode_message(msg, one, depth + 1),
        many => decode_message(msg, &many.concat(), depth + 1),
    }
}

fn map_entry(ty: Ty, entry: &[u8], depth: usize) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(entry);
    while let Some((tag, v)) = reader.next_field()? {
        match tag {
            1 => match v {
                WireValue::Bytes(b) => key = String::from_utf8_lossy(b).into_owned(),
                _ => return Err(DecodeReason::WrongWireType("map key").into()),
            },
            2 => value = Some(v),
            _ => {}
        }
    }
    let value = match value {
        Some(v) => scalar(ty, v, depth),
        // An entry without a value holds the value type's zero.
        None => zero(ty, depth),
    }
    .map_err(|e| e.at(|| format!("[{key}]")))?;
    Ok((key, value))
}

fn zero(ty: Ty, depth: usize) -> Result<Value, DecodeError> {
    Ok(match ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Int32 | Ty::Int64 => Value::from(0),
        Ty::Double => Value::from(0.0),
        Ty::Message(index) => decode_message(schema::message(index), &[], depth + 1)?,
    })
}

fn unpack(ty: Ty, packed: &[u8], items: &mut Vec<Value>) -> Result<(), DecodeError> {
    let mut reader = Reader::new(packed);
    while !reader.is_empty() {
        let value =
            if ty == Ty::Double { WireValue::Fixed64(reader.fixed64()?) } else { WireValue::Varint(reader.varint()?) };
        items.push(scalar(ty, value, 0)?);
    }
    Ok(())
}

fn scalar(ty: Ty, value: WireValue<'_>, depth: usize) -> Result<Value, DecodeError> {
    Ok(match (ty, value) {
        (Ty::String, WireValue::Bytes(b)) => {
            // Go strings may hold any bytes; its JSON encoder writes invalid UTF-8 as U+FFFD.
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Ty::Bytes, WireValue::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Bool, WireValue::Varint(n)) => Value::Bool(n != 0),
        // int32 travels as a sign-extended varint; its low 32 bits are the value.
        (Ty::Int32, WireValue::Varint(n)) => Value::from(n as i32),
        (Ty::Int64, WireValue::Varint(n)) => Value::from(n as i64),
        (Ty::Double, WireValue::Fixed64(bits)) => {
            let f = f64::from_bits(bits);
            Value::Number(
                Number::from_f64(f).ok_or_else(|| DecodeReason::InvalidValue(format!("{f} is not a JSON number")))?,
            )
        }
        (Ty::Message(index), WireValue::Bytes(b)) => decode_message(schema::message(index), b, depth + 1)?,
        (ty, _) => return Err(DecodeReason::WrongWireType(ty_name(ty)).into()),
    })
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::String => "string",
        Ty::Bytes => "bytes",
        Ty::Bool => "bool",
        Ty::Int32 => "int32",
        Ty::Int64 => "int64",
        Ty::Double => "double",
        Ty::Message(_) => "message",
    }
}

/// Messages with a JSON form of their own (see [`Form`]).
fn special(
    msg: &'static Message,
    form: Form,
    bytes: &[u8],
    slots: &[Vec<WireValue<'_>>],
    depth: usize,
) -> Result<Value, DecodeError> {
    let get = |tag: u32| -> Result<Option<Value>, DecodeError> {
        match msg.field(tag) {
            Some((i, field)) => field_value(field, &slots[i], depth).map_err(|e| e.at(|| field.json.to_string())),
            None => Ok(None),
        }
    };
    let int = |tag: u32| -> Result<i64, DecodeError> { Ok(get(tag)?.and_then(|v| v.as_i64()).unwrap_or(0)) };
    let invalid = |text: String| DecodeError::from(DecodeReason::InvalidValue(text));
    match form {
        Form::Fields => fields_object(msg, slots, depth),
        Form::Time | Form::MicroTime => {
            // metav1.Time writes nothing at all for the zero time.
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            forms::timestamp(int(1)?, int(2)?, form == Form::MicroTime).map_err(invalid)
        }
        Form::Duration => Ok(Value::String(crate::domain::duration::go_duration(int(1)?))),
        Form::Quantity => Ok(get(1)?.unwrap_or_else(|| Value::from("0"))),
        Form::IntOrString => match int(1)? {
            0 => Ok(get(2)?.unwrap_or_else(|| Value::from(0))),
            1 => Ok(get(3)?.unwrap_or_else(|| Value::from(""))),
            other => Err(invalid(format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"))),
        },
        Form::EmbeddedJson => {
            let raw = match msg.field(1).and_then(|(i, _)| slots[i].last()) {
                Some(WireValue::Bytes(raw)) => *raw,
                Some(_) => return Err(DecodeReason::WrongWireType("bytes").into()),
                None => &[],
            };
            embedded(raw, depth)
        }
        Form::StringList => Ok(get(1)?.unwrap_or_else(|| Value::Array(Vec::new()))),
        Form::SchemaOrArray => match (get(1)?, get(2)?) {
            (_, Some(Value::Array(list))) if !list.is_empty() => Ok(Value::Array(list)),
            (schema, _) => Ok(schema.unwrap_or(Value::Null)),
        },
        Form::SchemaOrBool => match get(2)? {
            Some(schema) => Ok(schema),
            None => Ok(Value::Bool(get(1)?.and_then(|v| v.as_bool()).unwrap_or(false))),
        },
        Form::SchemaOrStringArray => match (get(1)?, get(2)?) {
            (_, Some(Value::Array(list))) if !list.is_empty() => Ok(Value::Array(list)),
            (schema, _) => Ok(schema.unwrap_or(Value::Null)),
        },
    }
}

/// The value inside a RawExtension-like field: JSON text, or an object encoded as
/// Kubernetes protobuf (magic prefix) by a client that embedded it that way.
fn embedded(raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if raw.starts_with(super::MAGIC) {
        return super::decode_envelope(raw, depth + 1).map_err(|e| DecodeReason::EmbeddedObject(e.to_string()).into());
    }
    serde_json::from_slice(raw).map_err(|e| DecodeReason::EmbeddedJson(e.to_string()).into())
}
