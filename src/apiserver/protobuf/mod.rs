//! Kubernetes protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`)
//! decoded into the JSON an upstream apiserver would see for the same object, so the rest of
//! the API server keeps working on JSON alone. kubectl's typed commands (`create configmap`,
//! `create deployment`, `scale`, `certificate approve`, ...) send their bodies this way.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope: `typeMeta` (apiVersion,
//! kind), `raw` (the object's own protobuf), `contentEncoding` and `contentType`. The
//! object is transcoded by a generic wire-format walker driven by a table generated from
//! the k8s-pb and k8s-openapi crates and Go's own type data (`scripts/gen-protobuf-table.py`
//! writes `table.rs`), which knows every field's tag, JSON name and Go JSON behaviour.
//!
//! The JSON is what Go's encoder writes for the object Go's protobuf decoder reads, i.e.
//! what a Go client sending JSON would have sent: fields absent from the wire are absent;
//! Go's protobuf encoder writes every non-pointer field, so a zero value of a non-pointer
//! `omitempty` field is dropped (`"generateName": ""` vanishes, and so does
//! autoscaling/v1 Scale `spec.replicas: 0`, exactly as in Go's JSON), while zeros of pointer
//! fields (`replicas: 0` of a Deployment, `privileged: false`) and of fields without
//! `omitempty` stay; a zero `metav1.Time` is `null`. Readers of the JSON must take a
//! missing non-pointer field as its zero value, as they must for JSON clients.
//!
//! Only the JSON fields of the Kubernetes version k3rs serves (k8s-openapi `v1_33`) are
//! produced; newer proto fields are skipped, as a 1.33 apiserver would skip them.

mod forms;
mod schema;
#[rustfmt::skip]
mod table;
mod transcode;
mod wire;

use serde_json::{Map, Value};

pub use schema::known_kinds;
pub use transcode::DecodeReason;
pub use wire::WireError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf body starts with these four bytes.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    MissingMagic,
    #[error("reading the protobuf envelope (runtime.Unknown) failed: {0}")]
    EnvelopeMalformed(String),
    #[error("the protobuf envelope names no apiVersion and kind")]
    TypeMetaMissing,
    #[error("the protobuf envelope's contentEncoding {0:?} is not supported")]
    ContentEncodingUnsupported(String),
    #[error("the protobuf envelope's contentType {0:?} is not {CONTENT_TYPE}")]
    ContentTypeUnsupported(String),
    #[error("no protobuf decoding is known for kind {kind:?} of apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("decoding {api_version} {kind} from protobuf failed at {path}: {reason}")]
    DecodeFailed { api_version: String, kind: String, path: String, reason: DecodeReason },
}

/// Decodes a whole protobuf request body into the object's JSON, with `apiVersion` and
/// `kind` taken from the envelope.
pub fn decode_request(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_envelope(body, 0)
}

/// The envelope of a body or of an object embedded in a RawExtension at `depth`.
fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::read(rest).map_err(|e| ProtobufError::EnvelopeMalformed(e.to_string()))?;
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(ProtobufError::TypeMetaMissing);
    }
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncodingUnsupported(envelope.content_encoding));
    }
    if !envelope.content_type.is_empty() && envelope.content_type != CONTENT_TYPE {
        return Err(ProtobufError::ContentTypeUnsupported(envelope.content_type));
    }
    let Some(message) = schema::message_for_kind(&envelope.api_version, &envelope.kind) else {
        return Err(ProtobufError::UnknownKind { api_version: envelope.api_version, kind: envelope.kind });
    };
    let object = transcode::decode_message(message, envelope.raw, depth).map_err(|e| ProtobufError::DecodeFailed {
        path: e.path_string(),
        reason: e.reason,
        api_version: envelope.api_version.clone(),
        kind: envelope.kind.clone(),
    })?;
    let mut out = Map::new();
    out.insert("apiVersion".to_string(), Value::String(envelope.api_version));
    out.insert("kind".to_string(), Value::String(envelope.kind));
    if let Value::Object(fields) = object {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// runtime.Unknown: 1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = wire::Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field()? {
            let wire::WireValue::Bytes(b) = value else {
                if (1..=4).contains(&tag) {
                    return Err(EnvelopeError::WrongWireType(tag));
                }
                continue;
            };
            match tag {
                1 => {
                    let mut meta = wire::Reader::new(b);
                    while let Some((tag, value)) = meta.next_field()? {
                        match (tag, value) {
                            (1, wire::WireValue::Bytes(v)) => env.api_version = text(v),
                            (2, wire::WireValue::Bytes(v)) => env.kind = text(v),
                            (1 | 2, _) => return Err(EnvelopeError::WrongWireType(tag)),
                            _ => {}
                        }
                    }
                }
                2 => env.raw = b,
                3 => env.content_encoding = text(b),
                4 => env.content_type = text(b),
                _ => {}
            }
        }
        Ok(env)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Debug, thiserror::Error)]
enum EnvelopeError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("field {0} has the wrong wire type")]
    WrongWireType(u32),
}

#[cfg(test)]
mod tests;
