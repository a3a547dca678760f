//! The Swagger 2.0 document in the protobuf encoding of gnostic's `openapi.v2.Document`
//! (`application/com.github.proto-openapi.spec.v2.v1.0+protobuf`): the only form
//! client-go's `OpenAPISchema()` accepts, so the one kubectl uses for client-side
//! validation (1.27 always downloads it), `kubectl explain --output=plaintext-openapiv2` and
//! the v2 fallback of client-side apply.
//!
//! Only the messages and fields k3rs' documents use are declared; field numbers are those of
//! gnostic's `OpenAPIv2.proto`. Vendor extensions are carried as gnostic does, as the YAML
//! text of their value (JSON is valid YAML).

use serde_json::Value;

use super::OpenApiError;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(super::BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::SimpleParameter),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::SimpleParameter),
    }
}

/// `QueryParameterSubSchema` and `PathParameterSubSchema` agree on the fields used here,
/// except `type`, which is field 6 in the first and 5 in the second.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    /// `type` of a path parameter.
    #[prost(string, tag = "5")]
    pub path_type: String,
    /// `type` of a query parameter.
    #[prost(string, tag = "6")]
    pub query_type: String,
    /// `uniqueItems` of a query parameter (field 19 of a path parameter, unused here).
    #[prost(bool, tag = "20")]
    pub query_unique_items: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1")]
    pub oneof: Option<response_value::Oneof>,
}

pub mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    #[prost(oneof = "schema_item::Oneof", tags = "1")]
    pub oneof: Option<schema_item::Oneof>,
}

pub mod schema_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitionsItem {
    #[prost(oneof = "security_definitions_item::Oneof", tags = "2")]
    pub oneof: Option<security_definitions_item::Oneof>,
}

pub mod security_definitions_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "2")]
        ApiKeySecurity(super::ApiKeySecurity),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// Encodes the v2 JSON document (as [`build_v2`](super::documents::build_v2) writes it).
pub fn encode_v2(json: &[u8]) -> Result<Vec<u8>, OpenApiError> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| OpenApiError::EncodeFailed(format!("re-reading the v2 JSON: {e}")))?;
    Ok(prost::Message::encode_to_vec(&document(&doc)?))
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn extensions(v: &Value) -> Result<Vec<NamedAny>, OpenApiError> {
    let Some(map) = v.as_object() else { return Ok(Vec::new()) };
    map.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| {
            let yaml =
                serde_json::to_string(v).map_err(|e| OpenApiError::EncodeFailed(format!("extension {k}: {e}")))?;
            Ok(NamedAny { name: k.clone(), value: Some(Any { yaml }) })
        })
        .collect()
}

fn document(doc: &Value) -> Result<Document, OpenApiError> {
    let mut paths = Vec::new();
    if let Some(map) = doc["paths"].as_object() {
        for (name, item) in map {
            paths.push(NamedPathItem { name: name.clone(), value: Some(path_item(item)?) });
        }
    }
    let mut definitions = Vec::new();
    if let Some(map) = doc["definitions"].as_object() {
        for (name, s) in map {
            definitions.push(NamedSchema { name: name.clone(), value: Some(schema(s)?) });
        }
    }
    let mut security_definitions = Vec::new();
    if let Some(map) = doc["securityDefinitions"].as_object() {
        for (name, d) in map {
            security_definitions.push(NamedSecurityDefinitionsItem {
                name: name.clone(),
                value: Some(SecurityDefinitionsItem {
                    oneof: Some(security_definitions_item::Oneof::ApiKeySecurity(ApiKeySecurity {
                        r#type: s(d, "type"),
                        name: s(d, "name"),
                        r#in: s(d, "in"),
                        description: s(d, "description"),
                    })),
                }),
            });
        }
    }
    let security = doc["security"]
        .as_array()
        .map(|reqs| {
            reqs.iter()
                .map(|req| SecurityRequirement {
                    additional_properties: req
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(name, scopes)| NamedStringArray {
                                    name: name.clone(),
                                    value: Some(StringArray {
                                        value: scopes
                                            .as_array()
                                            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                                            .unwrap_or_default(),
                                    }),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Document {
        swagger: s(doc, "swagger"),
        info: Some(Info { title: s(&doc["info"], "title"), version: s(&doc["info"], "version") }),
        paths: Some(Paths { path: paths }),
        definitions: Some(Definitions { additional_properties: definitions }),
        security,
        security_definitions: Some(SecurityDefinitions { additional_properties: security_definitions }),
    })
}

fn path_item(item: &Value) -> Result<PathItem, OpenApiError> {
    let op = |method: &str| item.get(method).map(operation).transpose();
    Ok(PathItem {
        get: op("get")?,
        put: op("put")?,
        post: op("post")?,
        delete: op("delete")?,
        patch: op("patch")?,
        parameters: parameters(item)?,
    })
}

fn parameters(v: &Value) -> Result<Vec<ParametersItem>, OpenApiError> {
    let Some(params) = v.get("parameters").and_then(Value::as_array) else { return Ok(Vec::new()) };
    params
        .iter()
        .map(|p| {
            let parameter = match p["in"].as_str() {
                Some("body") => parameter::Oneof::BodyParameter(BodyParameter {
                    description: s(p, "description"),
                    name: s(p, "name"),
                    r#in: "body".to_string(),
                    required: p["required"].as_bool().unwrap_or(false),
                    schema: Some(schema(&p["schema"])?),
                }),
                Some(location @ ("query" | "path")) => {
                    let mut sub = SimpleParameter {
                        required: p["required"].as_bool().unwrap_or(false),
                        r#in: location.to_string(),
                        description: s(p, "description"),
                        name: s(p, "name"),
                        ..Default::default()
                    };
                    let oneof = if location == "query" {
                        sub.query_type = s(p, "type");
                        sub.query_unique_items = p["uniqueItems"].as_bool().unwrap_or(false);
                        non_body_parameter::Oneof::QueryParameterSubSchema(sub)
                    } else {
                        sub.path_type = s(p, "type");
                        non_body_parameter::Oneof::PathParameterSubSchema(sub)
                    };
                    parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(oneof) })
                }
                other => {
                    return Err(OpenApiError::EncodeFailed(format!("parameter location {other:?} has no encoding")));
                }
            };
            Ok(ParametersItem { oneof: Some(parameters_item::Oneof::Parameter(Parameter { oneof: Some(parameter) })) })
        })
        .collect()
}

fn operation(op: &Value) -> Result<Operation, OpenApiError> {
    let mut responses = Vec::new();
    if let Some(map) = op["responses"].as_object() {
        for (code, r) in map {
            let schema = match r.get("schema") {
                Some(sch) => Some(SchemaItem { oneof: Some(schema_item::Oneof::Schema(schema(sch)?)) }),
                None => None,
            };
            responses.push(NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    oneof: Some(response_value::Oneof::Response(Response { description: s(r, "description"), schema })),
                }),
            });
        }
    }
    Ok(Operation {
        tags: strings(op, "tags"),
        description: s(op, "description"),
        operation_id: s(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op)?,
        responses: Some(Responses { response_code: responses }),
        schemes: strings(op, "schemes"),
        vendor_extension: extensions(op)?,
    })
}

fn schema(v: &Value) -> Result<Schema, OpenApiError> {
    let Some(map) = v.as_object() else {
        return Err(OpenApiError::EncodeFailed(format!("a schema must be an object, not {v}")));
    };
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "$ref" | "format" | "description" | "required" | "additionalProperties" | "type" | "items" | "properties"
        ) && !key.starts_with("x-")
        {
            return Err(OpenApiError::EncodeFailed(format!("schema keyword {key} has no encoding")));
        }
    }
    let additional_properties = match map.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            Some(Box::new(AdditionalPropertiesItem { oneof: Some(additional_properties_item::Oneof::Boolean(*b)) }))
        }
        Some(other) => Some(Box::new(AdditionalPropertiesItem {
            oneof: Some(additional_properties_item::Oneof::Schema(schema(other)?)),
        })),
        None => None,
    };
    let properties = match map.get("properties").and_then(Value::as_object) {
        Some(props) => Some(Properties {
            additional_properties: props
                .iter()
                .map(|(name, p)| Ok(NamedSchema { name: name.clone(), value: Some(schema(p)?) }))
                .collect::<Result<_, OpenApiError>>()?,
        }),
        None => None,
    };
    Ok(Schema {
        r#ref: s(v, "$ref"),
        format: s(v, "format"),
        description: s(v, "description"),
        required: strings(v, "required"),
        additional_properties,
        r#type: map.get("type").and_then(Value::as_str).map(|t| TypeItem { value: vec![t.to_string()] }),
        items: match map.get("items") {
            Some(items) => Some(ItemsItem { schema: vec![schema(items)?] }),
            None => None,
        },
        properties,
        vendor_extension: extensions(v)?,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::documents::build_v2;
    use super::super::schemas::Definitions;
    use super::*;

    fn decoded() -> Document {
        let defs = Definitions::load().unwrap_or_else(|e| panic!("{e}"));
        let json = build_v2(&defs).unwrap_or_else(|e| panic!("{e}"));
        let pb = encode_v2(&json).unwrap_or_else(|e| panic!("{e}"));
        Document::decode(pb.as_slice()).unwrap_or_else(|e| panic!("decoding our own encoding: {e}"))
    }

    fn ext<'a>(list: &'a [NamedAny], name: &str) -> Option<&'a str> {
        list.iter().find(|e| e.name == name).and_then(|e| e.value.as_ref()).map(|v| v.yaml.as_str())
    }

    #[test]
    fn definitions_survive_the_encoding() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.map(|d| d.additional_properties).unwrap_or_default();
        let deployment = defs.iter().find(|d| d.name == "io.k8s.api.apps.v1.Deployment").and_then(|d| d.value.clone());
        let deployment = deployment.unwrap_or_else(|| panic!("no Deployment"));
        let gvk: Value = serde_json::from_str(
            ext(&deployment.vendor_extension, "x-kubernetes-group-version-kind").unwrap_or("null"),
        )
        .unwrap_or(Value::Null);
        assert_eq!(gvk, serde_json::json!([{"group": "apps", "kind": "Deployment", "version": "v1"}]));
        let spec = defs.iter().find(|d| d.name == "io.k8s.api.core.v1.PodSpec").and_then(|d| d.value.clone());
        let props = spec.and_then(|s| s.properties).map(|p| p.additional_properties).unwrap_or_default();
        let containers = props.iter().find(|p| p.name == "containers").and_then(|p| p.value.clone());
        let containers = containers.unwrap_or_else(|| panic!("no containers"));
        assert_eq!(ext(&containers.vendor_extension, "x-kubernetes-patch-merge-key"), Some("\"name\""));
        assert_eq!(containers.r#type.map(|t| t.value), Some(vec!["array".to_string()]));
        let item = containers.items.map(|i| i.schema).unwrap_or_default();
        assert_eq!(item.first().map(|s| s.r#ref.as_str()), Some("#/definitions/io.k8s.api.core.v1.Container"));
    }

    #[test]
    fn patch_operations_carry_field_validation_and_the_gvk() {
        let doc = decoded();
        let paths = doc.paths.map(|p| p.path).unwrap_or_default();
        let item = paths.iter().find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        let patch = item.and_then(|i| i.value.clone()).and_then(|v| v.patch).unwrap_or_else(|| panic!("no PATCH"));
        assert!(patch.consumes.iter().any(|c| c == "application/strategic-merge-patch+json"));
        let names: Vec<String> = patch
            .parameters
            .iter()
            .filter_map(|p| match &p.oneof {
                Some(parameters_item::Oneof::Parameter(Parameter {
                    oneof:
                        Some(parameter::Oneof::NonBodyParameter(NonBodyParameter {
                            oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(q)),
                        })),
                })) => Some(q.name.clone()),
                _ => None,
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        let gvk: Value =
            serde_json::from_str(ext(&patch.vendor_extension, "x-kubernetes-group-version-kind").unwrap_or("null"))
                .unwrap_or(Value::Null);
        assert_eq!(gvk["kind"], "Deployment");
    }
}
