//! Kubernetes strategic merge patch over JSON values, following upstream's algorithm:
//! maps merge key by key (`null` deletes), lists with the `merge` strategy merge by merge key
//! (or as a set, for scalars) and other lists are replaced; the directives `$patch`
//! (`replace`/`delete`), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>` are honoured, and merged lists are ordered as upstream orders
//! them (patch order first, server-only items kept where they were relative to them).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::gofmt::{go_type, go_v};
use super::schema::{PatchStrategy, TypeSchema};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const MAP_TYPE: &str = "map[string]interface {}";
const LIST_TYPE: &str = "[]interface {}";

/// Why a strategic merge patch did not apply, by the status upstream answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmpError {
    /// The patch is malformed (upstream: 400 BadRequest).
    BadRequest(String),
    /// The patch is well-formed but cannot apply (upstream: 422).
    Unprocessable(String),
    /// Any other failure (upstream returns these unconverted, as 500).
    Failed(String),
}

type Schema = Option<&'static TypeSchema>;

/// The strategic metadata of one field, defaulting to none.
#[derive(Clone, Copy)]
struct Meta {
    strategy: PatchStrategy,
    merge_key: &'static str,
    schema: Schema,
}

fn lookup(schema: Schema, field: &str) -> Meta {
    match schema.and_then(|s| s.field(field)) {
        Some(f) => Meta { strategy: f.strategy, merge_key: f.merge_key.unwrap_or(""), schema: f.schema },
        None => Meta { strategy: PatchStrategy::default(), merge_key: "", schema: None },
    }
}

/// A JSON scalar as Go's `==` compares interface values (integers and floats differ).
/// Objects and arrays have no key: Go cannot compare them, so they never match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

fn key_of(v: &Value) -> Option<Key> {
    Some(match v {
        Value::Null => Key::Null,
        Value::Bool(b) => Key::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Key::Int(i),
            None => {
                let f = n.as_f64().unwrap_or(0.0);
                Key::Float(if f == 0.0 { 0 } else { f.to_bits() })
            }
        },
        Value::String(s) => Key::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn go_eq(a: &Value, b: &Value) -> bool {
    matches!((key_of(a), key_of(b)), (Some(x), Some(y)) if x == y)
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> SmpError {
    SmpError::Failed(format!("map: {} does not contain declared merge key: {key}", go_v(&Value::Object(m.clone()))))
}

fn bad_arg_type(expected: &str, actual: &Value) -> SmpError {
    SmpError::Failed(format!("expected a {expected}, but received a {}", go_type(actual)))
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> SmpError {
    SmpError::Failed(format!("unknown patch type: {} in map: {}", go_v(t), go_v(&Value::Object(m.clone()))))
}

/// Apply `patch` to `original` (both JSON objects) with `schema` as the root type.
pub(crate) fn merge_object(
    original: Map<String, Value>,
    patch: Map<String, Value>,
    schema: &'static TypeSchema,
) -> Result<Map<String, Value>, SmpError> {
    merge_map(original, patch, Some(schema))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>, SmpError> {
    if let Some(directive) = patch.get(DIRECTIVE).cloned() {
        return directive_in_map(&directive, patch);
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema)?;

    // Upstream visits keys in random order; deletion lists go last here so that adding to
    // and deleting from one list in the same patch both take effect, whatever the order.
    let mut entries: Vec<(String, Value)> = patch.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.starts_with(DELETE_FROM_PRIMITIVE_LIST));
    for (k, patch_v) in entries {
        let (key, is_delete_list) = if k.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (extract_key(&k, DELETE_FROM_PRIMITIVE_LIST)?, true)
        } else {
            (k, false)
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(slot) = original.get_mut(&key) else {
            if !is_delete_list {
                let mut v = patch_v;
                discard_nulls(&mut v);
                if let Some(v) = remove_directives(v) {
                    original.insert(key, v);
                }
            }
            continue;
        };
        if go_type(slot) != go_type(&patch_v) {
            if !is_delete_list {
                let mut v = patch_v;
                discard_nulls(&mut v);
                match remove_directives(v) {
                    Some(v) => *slot = v,
                    None => {
                        original.remove(&key);
                    }
                }
            }
            continue;
        }
        let orig_v = std::mem::take(slot);
        let merged = match (orig_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                let meta = lookup(schema, &key);
                if meta.strategy.replace {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(o, p, meta.schema)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let meta = lookup(schema, &key);
                if meta.strategy.merge || is_delete_list {
                    Value::Array(merge_slice(o, p, meta, is_delete_list)?)
                } else {
                    Value::Array(p)
                }
            }
            (_, p) => p,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A map carrying `$patch`: `replace` makes the patch (less the directive) the value,
/// `delete` leaves an empty map.
fn directive_in_map(directive: &Value, mut patch: Map<String, Value>) -> Result<Map<String, Value>, SmpError> {
    match directive.as_str() {
        Some("replace") => {
            patch.remove(DIRECTIVE);
            Ok(patch)
        }
        Some("delete") => Ok(Map::new()),
        _ => Err(bad_patch_type(directive, &patch)),
    }
}

/// `$retainKeys`: drop every key of `original` not listed; every key the patch sets must be
/// listed.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), SmpError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = retain else {
        return Err(SmpError::BadRequest("invalid patch format of retainKeys".into()));
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !keep.contains(k.as_str()) {
            return Err(SmpError::BadRequest("invalid patch format of retainKeys".into()));
        }
    }
    original.retain(|k, _| keep.contains(k.as_str()));
    Ok(())
}

fn extract_key(s: &str, prefix: &str) -> Result<String, SmpError> {
    match s.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(SmpError::BadRequest(
            if prefix == DELETE_FROM_PRIMITIVE_LIST {
                "invalid patch format of primitive list"
            } else {
                "invalid patch format of setElementOrder list"
            }
            .into(),
        )),
    }
}

/// Drop `null` members of maps, at any depth (a new value carries no deletions).
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// The value without directive-carrying maps; `None` when the value itself is one.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) if m.contains_key(DIRECTIVE) => None,
        Value::Object(m) => {
            Some(Value::Object(m.into_iter().filter_map(|(k, x)| remove_directives(x).map(|x| (k, x))).collect()))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// The Go type shared by every element of the lists (lists of lists are refused).
fn element_type(lists: &[&[Value]]) -> Result<&'static str, SmpError> {
    let mut found: Option<&'static str> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let t = go_type(v);
        match found {
            None if t == LIST_TYPE => return Err(SmpError::Unprocessable("lists of lists are not supported".into())),
            None => found = Some(t),
            Some(prev) if prev != t => {
                let shown = Value::Array(lists.iter().map(|l| Value::Array(l.to_vec())).collect());
                return Err(SmpError::Failed(format!("list element types are not identical: {}", go_v(&shown))));
            }
            Some(_) => {}
        }
    }
    found.ok_or_else(|| SmpError::Failed("no elements in any of the given slices".into()))
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: Meta,
    is_delete_list: bool,
) -> Result<Vec<Value>, SmpError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_type(&[&original, &patch])?;
    if kind != MAP_TYPE {
        if is_delete_list {
            let gone: HashSet<Key> = patch.iter().filter_map(key_of).collect();
            return Ok(original.into_iter().filter(|v| key_of(v).is_none_or(|k| !gone.contains(&k))).collect());
        }
        let mut seen = HashSet::new();
        let merged: Vec<Value> =
            original.iter().chain(patch.iter()).filter(|v| key_of(v).is_none_or(|k| seen.insert(k))).cloned().collect();
        let in_patch: HashSet<Key> = patch.iter().filter_map(key_of).collect();
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| key_of(v).is_some_and(|k| in_patch.contains(&k)));
        return normalize_element_order(patch_items, server_only, &patch, &original, "");
    }

    let key = meta.merge_key;
    if key.is_empty() {
        let name = if meta.schema.is_some() { "struct" } else { "string" };
        return Err(SmpError::Failed(format!("cannot merge lists without merge key for {name}")));
    }
    let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
    let merged = merge_slice_without_special_elements(original.clone(), patch.clone(), key, meta.schema)?;
    let (patch_items, server_only) = partition_maps(merged, &patch, key)?;
    normalize_element_order(patch_items, server_only, &patch, &original, key)
}

/// Handle list elements carrying `$patch`: `delete` removes the original elements with that
/// merge key, `replace` makes the other patch elements the whole list.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = v else {
            return Err(bad_arg_type(MAP_TYPE, &v));
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            rest.push(Value::Object(m));
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(target) = m.get(key) else {
                    return Err(no_merge_key(&m, key));
                };
                original.retain(|o| !o.get(key).is_some_and(|ov| go_eq(ov, target)));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(SmpError::Failed("merging lists cannot yet be specified in the patch".into()));
            }
            _ => return Err(bad_patch_type(directive, &m)),
        }
    }
    if replace {
        Ok((rest, Vec::new()))
    } else {
        Ok((original, rest))
    }
}

/// Merge each patch element into the original element with its merge key, or append it.
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    schema: Schema,
) -> Result<Vec<Value>, SmpError> {
    let mut index: HashMap<Key, usize> = HashMap::new();
    for (i, o) in original.iter().enumerate() {
        if let Some(k) = o.get(key).and_then(key_of) {
            index.entry(k).or_insert(i);
        }
    }
    for v in patch {
        let Value::Object(m) = v else {
            return Err(bad_arg_type(MAP_TYPE, &v));
        };
        let Some(kv) = m.get(key) else {
            return Err(no_merge_key(&m, key));
        };
        let k = key_of(kv);
        match k.as_ref().and_then(|k| index.get(k)).copied() {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut original[i]) else {
                    return Err(SmpError::Failed(format!("value for key {i} is not a map")));
                };
                original[i] = Value::Object(merge_map(o, m, schema)?);
            }
            None => {
                if let Some(k) = k {
                    index.insert(k, original.len());
                }
                original.push(Value::Object(m));
            }
        }
    }
    Ok(original)
}

/// Split merged maps into those whose merge key appears in `by` and the rest.
fn partition_maps(merged: Vec<Value>, by: &[Value], key: &str) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let mut present: HashSet<Key> = HashSet::new();
    for (i, b) in by.iter().enumerate() {
        let Value::Object(m) = b else {
            return Err(SmpError::Failed(format!("value for key {i} is not a map")));
        };
        if let Some(k) = m.get(key).and_then(key_of) {
            present.insert(k);
        }
    }
    let mut in_by = Vec::new();
    let mut rest = Vec::new();
    for v in merged {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type(MAP_TYPE, &v));
        };
        let Some(kv) = m.get(key) else {
            return Err(no_merge_key(m, key));
        };
        if key_of(kv).is_some_and(|k| present.contains(&k)) {
            in_by.push(v);
        } else {
            rest.push(v);
        }
    }
    Ok((in_by, rest))
}

/// The key an element is ordered by: its merge key for maps, itself for scalars.
fn order_key(v: &Value, key: &str) -> Option<Key> {
    if key.is_empty() {
        key_of(v)
    } else {
        v.get(key).and_then(key_of)
    }
}

/// First position of each key in `order`.
fn positions(order: &[Value], key: &str) -> HashMap<Key, usize> {
    let mut pos = HashMap::new();
    for (i, v) in order.iter().enumerate() {
        if let Some(k) = order_key(v, key) {
            pos.entry(k).or_insert(i);
        }
    }
    pos
}

fn check_merge_keys(lists: &[&[Value]], key: &str) -> Result<(), SmpError> {
    for v in lists.iter().flat_map(|l| l.iter()) {
        let Value::Object(m) = v else {
            return Err(bad_arg_type(MAP_TYPE, v));
        };
        if !m.contains_key(key) {
            return Err(no_merge_key(m, key));
        }
    }
    Ok(())
}

/// Sort `items` stably by their position in `order` (maps: `$patch: delete` items last).
fn sort_by_order(items: Vec<Value>, order: &[Value], key: &str) -> Result<Vec<Value>, SmpError> {
    let (mut keep, deleted): (Vec<Value>, Vec<Value>) = if key.is_empty() {
        (items, Vec::new())
    } else {
        check_merge_keys(&[&items, order], key)?;
        items.into_iter().partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    };
    let pos = positions(order, key);
    keep.sort_by_key(|v| order_key(v, key).and_then(|k| pos.get(&k).copied()).unwrap_or(usize::MAX));
    keep.extend(deleted);
    Ok(keep)
}

/// Patch items in the patch's order, server-only items in the server's order, interleaved
/// so a server-only item stays before a patch item it preceded on the server.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
) -> Result<Vec<Value>, SmpError> {
    let right = sort_by_order(patch_items, patch_order, key)?;
    let left = sort_by_order(server_only, server_order, key)?;
    let pos = positions(server_order, key);
    let at = |v: &Value| order_key(v, key).and_then(|k| pos.get(&k).copied());
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((at(l), at(r)), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn merge_key_value_equal(l: &Value, r: &Value, key: &str) -> Result<bool, SmpError> {
    if key.is_empty() {
        return Ok(go_eq(l, r));
    }
    let Value::Object(lm) = l else {
        return Err(bad_arg_type(MAP_TYPE, l));
    };
    let Value::Object(rm) = r else {
        return Err(bad_arg_type(MAP_TYPE, r));
    };
    let Some(lv) = lm.get(key) else {
        return Err(no_merge_key(lm, key));
    };
    let Some(rv) = rm.get(key) else {
        return Err(no_merge_key(rm, key));
    };
    Ok(go_eq(lv, rv))
}

/// The patch list's elements must appear in the `$setElementOrder` list, in its order.
fn validate_with_order(patch_list: &[Value], order: &[Value], key: &str) -> Result<(), SmpError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut kept = Vec::new();
        for v in patch_list {
            let Value::Object(m) = v else {
                return Err(bad_arg_type(MAP_TYPE, v));
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                kept.push(v);
            }
        }
        kept
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[si], key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(SmpError::Failed(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_v(&Value::Array(patch_list.to_vec())),
            go_v(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// `$setElementOrder/<field>`: merge the field's patch list now and order the result by
/// the directive's list.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<(), SmpError> {
    let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let Some(order_v) = patch.remove(&directive) else {
            continue;
        };
        let Value::Array(order) = order_v else {
            return Err(bad_arg_type(LIST_TYPE, &order_v));
        };
        let field = extract_key(&directive, SET_ELEMENT_ORDER)?;
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg_type(LIST_TYPE, other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg_type(LIST_TYPE, other)),
        };
        let meta = lookup(schema, &field);
        let key = meta.merge_key;
        validate_with_order(patch_list.as_deref().unwrap_or(&[]), &order, key)?;
        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(a)) => a,
                _ => continue,
            },
            (Some(o), Some(p)) => {
                if meta.strategy.merge {
                    merge_slice(o.clone(), p.clone(), meta, false)?
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = if key.is_empty() {
            let in_order: HashSet<Key> = order.iter().filter_map(key_of).collect();
            merged.into_iter().partition(|v| key_of(v).is_some_and(|k| in_order.contains(&k)))
        } else {
            partition_maps(merged, &order, key)?
        };
        let empty = Vec::new();
        let original_list = original_list.unwrap_or_default();
        if element_type(&[&original_list, patch_list.as_ref().unwrap_or(&empty)])? == MAP_TYPE && key.is_empty() {
            // Upstream cannot order maps without a merge key either.
            return Err(SmpError::Failed(format!("cannot order list {field} without a merge key")));
        }
        let ordered = normalize_element_order(patch_items, server_only, &order, &original_list, key)?;
        original.insert(field.clone(), Value::Array(ordered));
        patch.remove(&field);
    }
    Ok(())
}
