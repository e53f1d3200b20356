//! When a request is sent again, after Go's `net/http` rule
//! (`shouldRetryRequest`): a request that never left (the connection was
//! found closed first) moves to another connection, whatever its method;
//! one cut off on a *reused* keep-alive connection, the server having
//! closed it as the request went out (hyper#2136), is sent once more if it
//! is idempotent and its body can be replayed, on a connection idle less
//! than half as long (`client.rs`).

use http::header::HeaderName;
use http::{Method, Request};

use crate::body::Body;

/// Marks a request safe to send twice although its method is not
/// idempotent (a POST the server deduplicates): put it in the request's
/// extensions. An `Idempotency-Key` or `X-Idempotency-Key` header does the
/// same.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetrySafe;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");

/// Whether sending the request twice has the effect of sending it once.
fn idempotent(req: &Request<Body>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.headers().contains_key(IDEMPOTENCY_KEY)
        || req.headers().contains_key(X_IDEMPOTENCY_KEY)
        || req.extensions().get::<RetrySafe>().is_some()
}

/// A copy of `req` to send again, or why it may not be.
pub(crate) fn replay_of(req: &Request<Body>) -> Result<Request<Body>, &'static str> {
    if !idempotent(req) {
        return Err("its method is not idempotent");
    }
    let body = req.body().replay().ok_or("its body is streamed")?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    if req.extensions().get::<RetrySafe>().is_some() {
        copy.extensions_mut().insert(RetrySafe);
    }
    Ok(copy)
}

/// Whether `e` is what a keep-alive connection the server closed gives:
/// the connection closed before the response (or reset, or the write
/// broke).
pub(crate) fn is_stale(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, body: Body) -> Request<Body> {
        let mut r = Request::new(body);
        *r.method_mut() = method;
        r
    }

    #[test]
    fn what_may_be_sent_again() {
        assert!(replay_of(&req(Method::GET, Body::empty())).is_ok());
        assert!(replay_of(&req(Method::PUT, Body::from("x"))).is_ok());
        assert_eq!(
            replay_of(&req(Method::POST, Body::from("x"))).unwrap_err(),
            "its method is not idempotent"
        );
        let mut marked = req(Method::POST, Body::from("x"));
        marked.extensions_mut().insert(RetrySafe);
        let copy = replay_of(&marked).unwrap();
        assert!(copy.extensions().get::<RetrySafe>().is_some());
        let mut keyed = req(Method::POST, Body::from("x"));
        keyed
            .headers_mut()
            .insert(IDEMPOTENCY_KEY, "k1".parse().unwrap());
        assert!(replay_of(&keyed).is_ok());
        let streamed = Body::from_stream(http_body_util::Full::new(bytes::Bytes::from("x")));
        assert_eq!(
            replay_of(&req(Method::GET, streamed)).unwrap_err(),
            "its body is streamed"
        );
    }
}
