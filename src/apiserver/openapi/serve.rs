//! HTTP semantics of `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group-version>`, as
//! upstream's handlers (kube-openapi) serve them:
//!
//! - `Accept` negotiation: v2 in JSON or gnostic protobuf (client-go asks for protobuf only);
//!   v3 documents in JSON, answered whenever JSON is acceptable (k3rs does not encode the v3
//!   protobuf, which kubectl never asks for); 406 with an empty body otherwise. Both carry
//!   `Vary: Accept`.
//! - Caching: `ETag` (quoted upper-case SHA-512 of the JSON), `Last-Modified`, 304 on a
//!   matching `If-None-Match` (or an `If-Modified-Since` not older than the document). A v3
//!   document asked for with the current `?hash=` is `Cache-Control: public, immutable` and
//!   `Expires` a year ahead; with a stale hash, a 301 to the current URL.

use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;

use super::documents::{Rendered, CACHE};

const JSON: &str = "application/json";
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V2_PROTOBUF_SUBTYPES: &[&str] =
    &["com.github.proto-openapi.spec.v2.v1.0+protobuf", "com.github.proto-openapi.spec.v2@v1.0+protobuf"];

/// A year, as upstream's `Expires` for hashed documents.
const IMMUTABLE_FOR: Duration = Duration::from_secs(365 * 24 * 3600);

/// One clause of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    ty: String,
    subtype: String,
    q: f32,
}

/// The clauses of `Accept`, most preferred first: by quality, then specific types before
/// wildcards (the order of upstream's `goautoneg`); an absent or empty header is `*/*`.
fn parse_accept(accept: Option<&str>) -> Vec<Clause> {
    let accept = accept.map(str::trim).filter(|a| !a.is_empty()).unwrap_or("*/*");
    let mut clauses: Vec<Clause> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim();
            let (ty, subtype) = match media.split_once('/') {
                Some((t, s)) => (t.trim(), s.trim()),
                None if media == "*" => ("*", "*"),
                None => return None,
            };
            let mut q = 1.0f32;
            for p in pieces {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim() == "q" {
                        q = v.trim().parse().unwrap_or(1.0);
                    }
                }
            }
            Some(Clause { ty: ty.to_ascii_lowercase(), subtype: subtype.to_ascii_lowercase(), q })
        })
        .filter(|c| c.q > 0.0)
        .collect();
    clauses.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.ty == "*").cmp(&(b.ty == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
}

/// The first offer (`(type, subtype)`) the clauses accept, in the clauses' order.
fn negotiate<T: Copy>(accept: Option<&str>, offers: &[(&str, &str, T)]) -> Option<T> {
    for c in parse_accept(accept) {
        for (ty, subtype, value) in offers {
            if (c.ty == *ty || c.ty == "*") && (c.subtype == *subtype || c.subtype == "*") {
                return Some(*value);
            }
        }
    }
    None
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Whether `If-None-Match` (or, without it, `If-Modified-Since`) says the client's copy is
/// current, as Go's `http.ServeContent` decides.
fn not_modified(headers: &HeaderMap, etag: &str, rendered_at: SystemTime) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == quoted(etag));
    }
    if let Some(ims) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) {
        if let Ok(since) = httpdate::parse_http_date(ims) {
            // HTTP dates have whole seconds.
            let modified = rendered_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let since = since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            return modified <= since;
        }
    }
    false
}

fn build(status: StatusCode, headers: Vec<(header::HeaderName, String)>, body: Bytes) -> Response<Bytes> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (name, value) in headers {
        resp.headers_mut().append(name, header_value(&value));
    }
    resp
}

/// A 200 or 304 for a rendered document.
fn document(
    doc: &Rendered,
    content_type: &str,
    request: &HeaderMap,
    vary: bool,
    immutable_from: Option<SystemTime>,
) -> Response<Bytes> {
    let mut headers = vec![(header::ETAG, quoted(&doc.etag))];
    if vary {
        headers.push((header::VARY, "Accept".to_string()));
    }
    if let Some(now) = immutable_from {
        headers.push((header::CACHE_CONTROL, "public, immutable".to_string()));
        headers.push((header::EXPIRES, httpdate::fmt_http_date(now + IMMUTABLE_FOR)));
    }
    if not_modified(request, &doc.etag, doc.rendered_at) {
        return build(StatusCode::NOT_MODIFIED, headers, Bytes::new());
    }
    headers.push((header::CONTENT_TYPE, content_type.to_string()));
    headers.push((header::LAST_MODIFIED, httpdate::fmt_http_date(doc.rendered_at)));
    build(StatusCode::OK, headers, doc.body.clone())
}

fn not_acceptable() -> Response<Bytes> {
    build(StatusCode::NOT_ACCEPTABLE, vec![(header::VARY, "Accept".to_string())], Bytes::new())
}

fn internal(e: &super::OpenApiError) -> Response<Bytes> {
    tracing::error!(error = %e, "rendering an OpenAPI document failed");
    build(
        StatusCode::INTERNAL_SERVER_ERROR,
        vec![(header::CONTENT_TYPE, "text/plain".to_string())],
        Bytes::from(e.to_string()),
    )
}

fn hash_param(query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == "hash").map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// Answers a GET (or HEAD) of an OpenAPI path: `/openapi/v2`, `/openapi/v3` or
/// `/openapi/v3/<api/v1|apis/<group>/<version>>`, with `query` the raw query string and
/// `now` the time used for `Expires`. `None` when the path is none of these or names a
/// group version that is not served: the caller answers as for any unknown path (404).
pub fn respond(path: &str, query: Option<&str>, headers: &HeaderMap, now: SystemTime) -> Option<Response<Bytes>> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match path {
        "/openapi/v2" => {
            #[derive(Clone, Copy)]
            enum F {
                Json,
                Protobuf,
            }
            let offers = [
                ("application", "json", F::Json),
                ("application", V2_PROTOBUF_SUBTYPES[0], F::Protobuf),
                ("application", V2_PROTOBUF_SUBTYPES[1], F::Protobuf),
            ];
            let Some(format) = negotiate(accept, &offers) else { return Some(not_acceptable()) };
            let rendered = match format {
                F::Json => CACHE.v2_json().map(|d| (d, JSON)),
                F::Protobuf => CACHE.v2_protobuf().map(|d| (d, V2_PROTOBUF)),
            };
            Some(match rendered {
                Ok((doc, content_type)) => document(doc, content_type, headers, true, None),
                Err(e) => internal(&e),
            })
        }
        "/openapi/v3" | "/openapi/v3/" => Some(match CACHE.v3_index() {
            Ok((index, _)) => document(index, JSON, headers, false, None),
            Err(e) => internal(&e),
        }),
        _ => {
            let gv = path.strip_prefix("/openapi/v3/")?;
            let hashes = match CACHE.v3_index() {
                Ok((_, hashes)) => hashes,
                Err(e) => return Some(internal(&e)),
            };
            let current = hashes.get(gv)?;
            if negotiate(accept, &[("application", "json", ())]).is_none() {
                return Some(not_acceptable());
            }
            let immutable_from = match hash_param(query) {
                Some(h) if &h == current => Some(now),
                Some(_) => {
                    let location = format!("/openapi/v3/{gv}?hash={current}");
                    return Some(build(
                        StatusCode::MOVED_PERMANENTLY,
                        vec![
                            (header::LOCATION, location),
                            (header::ETAG, quoted(current)),
                            (header::VARY, "Accept".to_string()),
                        ],
                        Bytes::new(),
                    ));
                }
                None => None,
            };
            Some(match CACHE.v3(gv) {
                Ok(Some(doc)) => document(&doc, JSON, headers, true, immutable_from),
                Ok(None) => return None,
                Err(e) => internal(&e),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), header_value(v));
        }
        h
    }

    fn get(path: &str, query: Option<&str>, h: &HeaderMap) -> Response<Bytes> {
        respond(path, query, h, SystemTime::now()).unwrap_or_else(|| panic!("{path} not answered"))
    }

    #[test]
    fn accept_order() {
        let c = parse_accept(Some("*/*;q=0.5, application/json;q=0.9, application/x;q=0, text/*"));
        let names: Vec<String> = c.iter().map(|c| format!("{}/{}", c.ty, c.subtype)).collect();
        assert_eq!(names, vec!["text/*", "application/json", "*/*"]);
        assert_eq!(parse_accept(None).len(), 1);
    }

    #[test]
    fn v2_protobuf_for_client_go_and_json_otherwise() {
        let pb = get(
            "/openapi/v2",
            None,
            &headers(&[(header::ACCEPT, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")]),
        );
        assert_eq!(pb.status(), StatusCode::OK);
        assert_eq!(pb.headers()[header::CONTENT_TYPE], V2_PROTOBUF);
        assert_eq!(pb.headers()[header::VARY], "Accept");
        let json = get("/openapi/v2", None, &HeaderMap::new());
        assert_eq!(json.headers()[header::CONTENT_TYPE], JSON);
        assert_eq!(json.headers()[header::ETAG], pb.headers()[header::ETAG]);
        assert!(json.body().starts_with(b"{"));
        assert_ne!(json.body(), pb.body());
        let refused = get("/openapi/v2", None, &headers(&[(header::ACCEPT, "application/yaml")]));
        assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn etags_answer_not_modified() {
        let first = get("/openapi/v2", None, &HeaderMap::new());
        let etag = first.headers()[header::ETAG].to_str().unwrap_or_default().to_string();
        assert_eq!(etag.len(), 130);
        let again = get("/openapi/v2", None, &headers(&[(header::IF_NONE_MATCH, &etag)]));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        let other = get("/openapi/v2", None, &headers(&[(header::IF_NONE_MATCH, "\"ABC\"")]));
        assert_eq!(other.status(), StatusCode::OK);
        let lm = first.headers()[header::LAST_MODIFIED].to_str().unwrap_or_default().to_string();
        let since = get("/openapi/v2", None, &headers(&[(header::IF_MODIFIED_SINCE, &lm)]));
        assert_eq!(since.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn v3_hashes_make_documents_immutable_and_stale_hashes_redirect() {
        let index = get("/openapi/v3", None, &HeaderMap::new());
        assert_eq!(index.headers()[header::CONTENT_TYPE], JSON);
        let index: serde_json::Value = serde_json::from_slice(index.body()).unwrap_or_default();
        let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap_or_default().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let h = headers(&[(header::ACCEPT, "application/json")]);
        let doc = get(path, Some(query), &h);
        assert_eq!(doc.status(), StatusCode::OK);
        assert_eq!(doc.headers()[header::CACHE_CONTROL], "public, immutable");
        assert!(doc.headers().contains_key(header::EXPIRES));
        assert_eq!(
            format!("hash={}", doc.headers()[header::ETAG].to_str().unwrap_or_default().trim_matches('"')),
            query
        );
        let plain = get(path, None, &h);
        assert!(!plain.headers().contains_key(header::CACHE_CONTROL));
        let stale = get(path, Some("hash=0123"), &h);
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(stale.headers()[header::LOCATION], url.as_str());
    }

    #[test]
    fn v3_json_whenever_acceptable() {
        let pb_first = headers(&[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v3@v1.0+protobuf, application/json;q=0.9",
        )]);
        let doc = get("/openapi/v3/apis/apps/v1", None, &pb_first);
        assert_eq!((doc.status(), doc.headers()[header::CONTENT_TYPE].to_str().ok()), (StatusCode::OK, Some(JSON)));
        let pb_only = headers(&[(header::ACCEPT, "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")]);
        assert_eq!(get("/openapi/v3/apis/apps/v1", None, &pb_only).status(), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(get("/openapi/v3/apis/apps/v1", None, &HeaderMap::new()).status(), StatusCode::OK);
    }

    #[test]
    fn other_paths_are_not_answered() {
        let h = HeaderMap::new();
        assert!(respond("/openapi/v3/apis/apps/v2", None, &h, SystemTime::now()).is_none());
        assert!(respond("/openapi/v4", None, &h, SystemTime::now()).is_none());
        assert!(respond("/api/v1", None, &h, SystemTime::now()).is_none());
    }
}
