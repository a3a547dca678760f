//! `GET pods/{name}/log`: the options as upstream validates them, then the container's log
//! as a chunked `text/plain` body, each chunk sent as soon as it is read (following keeps
//! the response open until the log ends or the client goes away).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::{check_log_available, load_pod, parse_bool, pick_container, query_pairs, LogOptions, LogStream};
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::status::{ApiError, Cause};
use crate::apiserver::ApiServer;

/// The query of a log request: the container and the options.
fn parse(raw: Option<&str>, pod_name: &str) -> Result<(Option<String>, LogOptions), ApiError> {
    let mut opts = LogOptions::default();
    let mut container = None;
    let int = |name: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("{name}: strconv.ParseInt: parsing {v:?}: invalid syntax")))
    };
    for (k, v) in query_pairs(raw)? {
        match k.as_str() {
            "container" => container = Some(v),
            "follow" => opts.follow = parse_bool(&k, &v)?,
            "previous" => opts.previous = parse_bool(&k, &v)?,
            "timestamps" => opts.timestamps = parse_bool(&k, &v)?,
            "tailLines" => opts.tail_lines = Some(int(&k, &v)?),
            "sinceSeconds" => opts.since_seconds = Some(int(&k, &v)?),
            "limitBytes" => opts.limit_bytes = Some(int(&k, &v)?),
            "sinceTime" => {
                let t = time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| ApiError::bad_request(format!("sinceTime: parsing time {v:?}: {e}")))?;
                opts.since_time = Some(t);
            }
            // Proxying to the node is in process here: there is no backend TLS to skip.
            _ => {}
        }
    }
    let invalid = |field: &str, value: i64, detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {value}: {detail}"),
    };
    let mut causes = Vec::new();
    if let Some(n) = opts.tail_lines.filter(|n| *n < 0) {
        causes.push(invalid("tailLines", n, "must be greater than or equal to 0"));
    }
    if let Some(n) = opts.limit_bytes.filter(|n| *n < 1) {
        causes.push(invalid("limitBytes", n, "must be greater than 0"));
    }
    if opts.since_seconds.is_some() && opts.since_time.is_some() {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            field: String::new(),
            message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        });
    }
    if let Some(n) = opts.since_seconds.filter(|n| *n < 1) {
        causes.push(invalid("sinceSeconds", n, "must be greater than 0"));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", pod_name, causes));
    }
    Ok((container, opts))
}

pub(super) async fn serve(
    api: &Arc<ApiServer>,
    r: &ResourceRequest,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let name = r.name.as_deref().unwrap_or("");
    let (asked, opts) = parse(query, name)?;
    let pod = load_pod(api, r).await?;
    let container = pick_container(&pod, asked.as_deref())?;
    if pod.pointer("/spec/nodeName").and_then(|v| v.as_str()).unwrap_or("").is_empty() {
        // Upstream answers an empty log for a pod no node has yet.
        return Ok(text_response(Body::empty()));
    }
    check_log_available(&pod, &container, opts.previous)?;
    let streams = api.pod_streams.get()?;
    let limit = opts.limit_bytes.map(|n| n.max(0) as u64);
    let stream = streams.logs(&pod, &container, opts).await?;
    let stream = match limit {
        Some(limit) => limit_bytes(stream, limit),
        None => stream,
    };
    Ok(text_response(Body::from_stream(stream)))
}

fn text_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Ends the stream after `limit` bytes, cutting the last chunk.
fn limit_bytes(stream: LogStream, limit: u64) -> LogStream {
    futures::stream::unfold((stream, limit), |(mut stream, left)| async move {
        if left == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(chunk) => {
                let take = (chunk.len() as u64).min(left) as usize;
                let chunk: Bytes = chunk.slice(..take);
                Some((Ok(chunk), (stream, left - take as u64)))
            }
            Err(e) => Some((Err(e), (stream, 0))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_validate_as_upstream() {
        let (c, o) = parse(Some("container=app&follow=true&tailLines=3&timestamps=1&limitBytes=10"), "p").unwrap();
        assert_eq!(c.as_deref(), Some("app"));
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(10)));
        let (_, o) = parse(Some("sinceTime=2025-03-01T10:00:00Z"), "p").unwrap();
        assert_eq!(o.since_time.map(|t| t.unix_timestamp()), Some(1740823200));
        let e = parse(Some("tailLines=-1"), "p").unwrap_err();
        assert_eq!(
            (e.code(), e.message.as_str()),
            (422, "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0")
        );
        let e = parse(Some("sinceSeconds=5&sinceTime=2025-03-01T10:00:00Z"), "p").unwrap_err();
        assert!(e.message.contains("at most one of `sinceTime` or `sinceSeconds` may be specified"), "{}", e.message);
        assert_eq!(parse(Some("tailLines=x"), "p").unwrap_err().code(), 400);
    }

    #[tokio::test]
    async fn limit_cuts_the_stream() {
        let chunks =
            vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world")), Ok(Bytes::from_static(b"!"))];
        let s = limit_bytes(futures::stream::iter(chunks).boxed(), 8);
        let got: Vec<Bytes> = s.map(|c| c.unwrap()).collect().await;
        assert_eq!(got.concat(), b"hello wo");
    }
}
