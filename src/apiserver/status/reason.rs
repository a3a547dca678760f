//! The `reason` of a `Status`: upstream's `metav1.StatusReason` values as an enum, each with
//! its wire string and the HTTP code upstream answers it with, so callers ask what went wrong
//! (`NotFound`, `Conflict`, ...) instead of comparing numbers, and a code is never paired
//! with a reason by hand.

use std::fmt;

/// Why a request failed, as upstream names it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The empty reason: upstream sends it where no reason fits, with any code; an
    /// unrecognised reason string is read as this too.
    Unknown,
    Unauthorized,
    Forbidden,
    NotFound,
    /// A create whose name is taken (409).
    AlreadyExists,
    /// An update that lost a race or broke a precondition (409).
    Conflict,
    /// Deprecated upstream in favour of `Expired`; still a reason clients must understand.
    Gone,
    Invalid,
    /// A transient failure the client should retry; upstream answers it with 500.
    ServerTimeout,
    /// The store held data that could not be decoded (500, wire string `StorageReadError`).
    StoreReadError,
    /// The request did not finish in time (504).
    Timeout,
    TooManyRequests,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    InternalError,
    /// The requested content is no longer kept, e.g. a compacted resource version (410).
    Expired,
    ServiceUnavailable,
}

impl Reason {
    /// Every reason, for tables and tests.
    pub const ALL: [Reason; 20] = [
        Reason::Unknown,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::Conflict,
        Reason::Gone,
        Reason::Invalid,
        Reason::ServerTimeout,
        Reason::StoreReadError,
        Reason::Timeout,
        Reason::TooManyRequests,
        Reason::BadRequest,
        Reason::MethodNotAllowed,
        Reason::NotAcceptable,
        Reason::RequestEntityTooLarge,
        Reason::UnsupportedMediaType,
        Reason::InternalError,
        Reason::Expired,
        Reason::ServiceUnavailable,
    ];

    /// The string written in `Status.reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Unknown => "",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Gone => "Gone",
            Reason::Invalid => "Invalid",
            Reason::ServerTimeout => "ServerTimeout",
            Reason::StoreReadError => "StorageReadError",
            Reason::Timeout => "Timeout",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::BadRequest => "BadRequest",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::InternalError => "InternalError",
            Reason::Expired => "Expired",
            Reason::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// The reason a `Status.reason` string names; a string upstream does not define is
    /// [`Reason::Unknown`], as upstream's error predicates treat it.
    pub fn from_wire(s: &str) -> Reason {
        Reason::ALL.into_iter().find(|r| r.as_str() == s).unwrap_or(Reason::Unknown)
    }

    /// The HTTP code upstream answers this reason with. `Unknown` has none of its own:
    /// upstream's handlers answer a plain error with 500.
    pub const fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Gone | Reason::Expired => 410,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::TooManyRequests => 429,
            Reason::Unknown | Reason::InternalError | Reason::ServerTimeout | Reason::StoreReadError => 500,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
        }
    }

    /// The reason upstream's client infers from the HTTP code of an error response whose
    /// body is no `Status` (apimachinery's generic server response): a 409 to a POST is a
    /// taken name, to anything else a conflict; 410 and 413 stay unknown there, and any
    /// other code from 500 up is an internal error.
    pub fn for_response(code: u16, is_post: bool) -> Reason {
        match code {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            405 => Reason::MethodNotAllowed,
            406 => Reason::NotAcceptable,
            409 if is_post => Reason::AlreadyExists,
            409 => Reason::Conflict,
            415 => Reason::UnsupportedMediaType,
            422 => Reason::Invalid,
            429 => Reason::TooManyRequests,
            503 => Reason::ServiceUnavailable,
            504 => Reason::Timeout,
            c if c >= 500 => Reason::InternalError,
            _ => Reason::Unknown,
        }
    }

    /// Whether an error with reason `actual` and code `code` counts as `self`, by
    /// upstream's rules (`IsNotFound`, `IsConflict`, ...): the reason matches, or the
    /// reason is unknown and the code is this reason's. Some reasons are only ever matched
    /// by name; two are matched by code whatever the reason, as upstream kept for
    /// compatibility.
    pub fn matches(self, actual: Reason, code: u16) -> bool {
        if actual == self {
            return true;
        }
        match self {
            Reason::Unknown
            | Reason::AlreadyExists
            | Reason::Expired
            | Reason::ServerTimeout
            | Reason::StoreReadError => false,
            Reason::TooManyRequests | Reason::RequestEntityTooLarge => code == self.code(),
            _ => actual == Reason::Unknown && code == self.code(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_wire(r.as_str()), r, "{r:?}");
        }
        let strings: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(strings.len(), Reason::ALL.len(), "wire strings are distinct");
    }

    #[test]
    fn wire_strings_are_upstreams() {
        assert_eq!(Reason::Unknown.as_str(), "");
        assert_eq!(Reason::StoreReadError.as_str(), "StorageReadError");
        assert_eq!(Reason::TooManyRequests.to_string(), "TooManyRequests");
        assert_eq!(Reason::from_wire("SomethingElse"), Reason::Unknown);
        assert_eq!(Reason::from_wire("notfound"), Reason::Unknown, "case matters on the wire");
    }

    #[test]
    fn codes_are_upstreams() {
        let table = [
            (Reason::Unknown, 500),
            (Reason::Unauthorized, 401),
            (Reason::Forbidden, 403),
            (Reason::NotFound, 404),
            (Reason::AlreadyExists, 409),
            (Reason::Conflict, 409),
            (Reason::Gone, 410),
            (Reason::Invalid, 422),
            (Reason::ServerTimeout, 500),
            (Reason::StoreReadError, 500),
            (Reason::Timeout, 504),
            (Reason::TooManyRequests, 429),
            (Reason::BadRequest, 400),
            (Reason::MethodNotAllowed, 405),
            (Reason::NotAcceptable, 406),
            (Reason::RequestEntityTooLarge, 413),
            (Reason::UnsupportedMediaType, 415),
            (Reason::InternalError, 500),
            (Reason::Expired, 410),
            (Reason::ServiceUnavailable, 503),
        ];
        assert_eq!(table.len(), Reason::ALL.len());
        for (r, code) in table {
            assert_eq!(r.code(), code, "{r:?}");
        }
    }

    #[test]
    fn reason_inferred_from_a_bare_code() {
        assert_eq!(Reason::for_response(409, true), Reason::AlreadyExists);
        assert_eq!(Reason::for_response(409, false), Reason::Conflict);
        assert_eq!(Reason::for_response(404, false), Reason::NotFound);
        assert_eq!(Reason::for_response(422, false), Reason::Invalid);
        assert_eq!(Reason::for_response(429, false), Reason::TooManyRequests);
        assert_eq!(Reason::for_response(503, false), Reason::ServiceUnavailable);
        assert_eq!(Reason::for_response(504, false), Reason::Timeout);
        assert_eq!(Reason::for_response(500, false), Reason::InternalError);
        assert_eq!(Reason::for_response(502, false), Reason::InternalError);
        // Upstream's table has no entry for these: the reason stays unknown.
        assert_eq!(Reason::for_response(410, false), Reason::Unknown);
        assert_eq!(Reason::for_response(413, false), Reason::Unknown);
        assert_eq!(Reason::for_response(418, false), Reason::Unknown);
        // Every code the table names maps to a reason answered with that code.
        for code in [400, 401, 403, 404, 405, 406, 409, 415, 422, 429, 500, 503, 504] {
            assert_eq!(Reason::for_response(code, false).code(), code, "{code}");
        }
    }

    #[test]
    fn matching_falls_back_to_the_code_only_for_unknown_reasons() {
        assert!(Reason::NotFound.matches(Reason::NotFound, 404));
        assert!(Reason::NotFound.matches(Reason::Unknown, 404));
        assert!(!Reason::NotFound.matches(Reason::InternalError, 404));
        assert!(Reason::Conflict.matches(Reason::Unknown, 409));
        assert!(!Reason::Conflict.matches(Reason::AlreadyExists, 409));
        assert!(Reason::Gone.matches(Reason::Unknown, 410));
        assert!(!Reason::Gone.matches(Reason::Expired, 410));
        // Matched by name only.
        assert!(!Reason::AlreadyExists.matches(Reason::Unknown, 409));
        assert!(!Reason::Expired.matches(Reason::Unknown, 410));
        assert!(!Reason::ServerTimeout.matches(Reason::Unknown, 500));
        assert!(!Reason::Unknown.matches(Reason::NotFound, 500));
        assert!(Reason::Unknown.matches(Reason::Unknown, 500));
        // Matched by code whatever the reason.
        assert!(Reason::TooManyRequests.matches(Reason::ServiceUnavailable, 429));
        assert!(Reason::RequestEntityTooLarge.matches(Reason::BadRequest, 413));
    }
}
