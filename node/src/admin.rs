//! The admin API (bearer token, docs/node-api.md: status, seal, certificate, alerts) and the
//! metrics/health server (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;

use alloy::primitives::keccak256;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::sequencer::Sequencer;
use crate::verifier::Verifier;

/// Largest admin request body.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 << 10;

/// The node behind the admin API.
#[derive(Debug, Clone)]
pub enum Node {
    /// A sequencer.
    Sequencer(Arc<Sequencer>),
    /// A verifier.
    Verifier(Arc<Verifier>),
}

#[derive(Debug)]
struct AdminCtx {
    node: Node,
    token_hash: [u8; 32],
}

fn reply(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    reply(status, &json!({ "error": message }))
}

/// Compares in constant time by comparing fixed-size digests, so neither the content nor the
/// length of the expected token leaks through timing.
fn token_matches(expected_hash: &[u8; 32], presented: &str) -> bool {
    let presented = keccak256(presented.as_bytes());
    expected_hash
        .iter()
        .zip(presented.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The admin router. `token` is the content of the token file, trailing whitespace stripped.
pub fn router(node: Node, token: &str) -> Router {
    let ctx = Arc::new(AdminCtx {
        node,
        token_hash: keccak256(token.as_bytes()).0,
    });
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/seal", post(seal))
        .route("/admin/v1/certificate/{number}", get(certificate))
        .route("/admin/v1/alerts", get(alerts))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES))
        .with_state(ctx)
}

async fn auth(State(ctx): State<Arc<AdminCtx>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if !t.is_empty() && token_matches(&ctx.token_hash, t) => next.run(req).await,
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
    }
}

async fn status(State(ctx): State<Arc<AdminCtx>>) -> Response {
    let body = match &ctx.node {
        Node::Sequencer(seq) => {
            let sealed = match seq.chain.store.sealed() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "reading seal");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable");
                }
            };
            json!({
                "role": "sequencer",
                "chainId": seq.chain.config.chain_id,
                "height": seq.chain.head().header.number,
                "finalizedHeight": seq.finality.finalized_height(),
                "sealed": sealed.is_some(),
                "finalBlock": sealed,
                "alerts": seq.finality.alert_count(),
            })
        }
        Node::Verifier(v) => json!({
            "role": "verifier",
            "chainId": v.chain.config.chain_id,
            "height": v.chain.head().header.number,
            "finalizedHeight": v.sequencer_finalized(),
            "sealed": false,
            "finalBlock": null,
            "alerts": v.alert_count(),
        }),
    };
    reply(StatusCode::OK, &body)
}

async fn seal(State(ctx): State<Arc<AdminCtx>>, _body: Bytes) -> Response {
    let Node::Sequencer(seq) = &ctx.node else {
        return error(StatusCode::CONFLICT, "only a sequencer can be sealed");
    };
    match seq.seal().await {
        Ok(f) => match serde_json::to_value(f) {
            Ok(v) => reply(StatusCode::OK, &v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn certificate(State(ctx): State<Arc<AdminCtx>>, Path(number): Path<String>) -> Response {
    let Node::Sequencer(seq) = &ctx.node else {
        return error(StatusCode::CONFLICT, "certificates are kept by the sequencer");
    };
    let Some(number) = number
        .parse::<u64>()
        .ok()
        .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
    else {
        return error(StatusCode::BAD_REQUEST, "block number must be a decimal integer");
    };
    match seq.finality.certificate(number) {
        Some(cert) => match serde_json::to_value(cert) {
            Ok(v) => reply(StatusCode::OK, &v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        None => error(StatusCode::NOT_FOUND, "block not certified (yet)"),
    }
}

async fn alerts(State(ctx): State<Arc<AdminCtx>>) -> Response {
    let list = match &ctx.node {
        Node::Sequencer(seq) => seq.finality.alerts(),
        Node::Verifier(v) => v.alerts(),
    };
    match serde_json::to_value(list) {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(metrics: Metrics, ready: Arc<dyn Fn() -> bool + Send + Sync>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let h = keccak256(b"s3cret").0;
        assert!(token_matches(&h, "s3cret"));
        assert!(!token_matches(&h, "s3cres"));
        assert!(!token_matches(&h, "s3cret "));
        assert!(!token_matches(&h, ""));
    }
}
