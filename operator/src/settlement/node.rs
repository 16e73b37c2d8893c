//! Client for the admin API of `flashlayer-node` (docs/node-api.md): status, seal, certificate, alerts.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The node promises responses under 1 MiB; a bigger one means something is wrong, and reading it
/// whole would let a misbehaving pod make the operator allocate without bound.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Error bodies end up in Kubernetes conditions and logs; keep them short.
const MAX_ERROR_MESSAGE_CHARS: usize = 200;

/// Role a node runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Produces blocks and serves JSON-RPC.
    Sequencer,
    /// Re-executes blocks, signs attestations, raises alerts.
    Verifier,
}

/// `GET /admin/v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Role of the node.
    pub role: NodeRole,
    /// The rollup's EVM chain id.
    pub chain_id: u64,
    /// Latest block.
    pub height: u64,
    /// Latest block certified by the MACH quorum.
    pub finalized_height: u64,
    /// Whether the sequencer has been sealed.
    pub sealed: bool,
    /// Final block once sealed.
    pub final_block: Option<FinalBlock>,
    /// Number of alerts the node holds.
    pub alerts: u64,
}

/// The last block of a sealed rollup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// State root after the block.
    pub state_root: B256,
}

/// MACH quorum certificate of one block, as the settlement contract's `settle` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The rollup's EVM chain id (part of the signed message).
    pub chain_id: u64,
    /// Rollup id on the settlement contract.
    pub rollup_id: B256,
    /// Certified block number.
    pub number: u64,
    /// Certified block hash.
    pub block_hash: B256,
    /// Certified state root.
    pub state_root: B256,
    /// Bit i set = i-th operator of the registered set signed.
    pub signer_bitmap: U256,
    /// Addresses of the signers, ascending bit order.
    pub signers: Vec<Address>,
    /// Stake of the signers.
    pub signed_stake: U256,
    /// Stake of the whole operator set.
    pub total_stake: U256,
    /// Aggregate G2 public key of the signers: `[x_c1, x_c0, y_c1, y_c0]`.
    pub apk_g2: [U256; 4],
    /// Aggregate G1 signature: `[x, y]`.
    pub sigma: [U256; 2],
}

/// A state-root mismatch found by a verifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Block whose re-execution disagreed.
    pub number: u64,
    /// Root the verifier computed.
    pub expected_state_root: B256,
    /// Root in the sequencer's header.
    pub got_state_root: B256,
    /// AVS operator that raised the alert.
    pub operator: Address,
    /// When it was raised.
    pub time: jiff::Timestamp,
}

/// Failure talking to a node's admin API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Connection failed or timed out.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node refused the admin token (or the token cannot be sent as a header).
    #[error("node refused the admin token")]
    Unauthorized,
    /// Any other non-success status.
    #[error("node answered HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The node's `error` message, truncated.
        message: String,
    },
    /// The response was not what docs/node-api.md describes.
    #[error("node response could not be decoded: {0}")]
    Decode(String),
}

impl NodeError {
    /// Stable label for metrics and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "node_unreachable",
            Self::Unauthorized => "node_unauthorized",
            Self::Http { .. } => "node_http",
            Self::Decode(_) => "node_decode",
        }
    }
}

/// Admin API client; cheap to clone (shares one connection pool).
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
}

impl NodeClient {
    /// Client with a 2 s connect and 5 s request timeout: a reconcile must not hang on a dead pod.
    pub fn new() -> Result<Self, NodeError> {
        Self::with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
    }

    /// Client with explicit timeouts.
    pub fn with_timeouts(connect: Duration, request: Duration) -> Result<Self, NodeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            // Pod IPs are reached directly; an HTTP(S)_PROXY from the environment would otherwise
            // see the bearer token.
            .no_proxy()
            // The admin API never redirects; following one could hand the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NodeError::Unreachable(format!("building HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// `GET /admin/v1/status`. `base` is like `http://10.1.2.3:8551`.
    pub async fn status(&self, base: &str, token: &str) -> Result<NodeStatus, NodeError> {
        let body = self.request(Method::GET, base, "/admin/v1/status", token).await?;
        decode(&body)
    }

    /// `POST /admin/v1/seal`: idempotent, returns the final block.
    pub async fn seal(&self, base: &str, token: &str) -> Result<FinalBlock, NodeError> {
        let body = self.request(Method::POST, base, "/admin/v1/seal", token).await?;
        decode(&body)
    }

    /// `GET /admin/v1/certificate/{number}`; `Ok(None)` while the quorum has not certified it.
    pub async fn certificate(&self, base: &str, token: &str, number: u64) -> Result<Option<Certificate>, NodeError> {
        let path = format!("/admin/v1/certificate/{number}");
        match self.request(Method::GET, base, &path, token).await {
            Ok(body) => decode(&body).map(Some),
            Err(NodeError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /admin/v1/alerts`.
    pub async fn alerts(&self, base: &str, token: &str) -> Result<Vec<Alert>, NodeError> {
        let body = self.request(Method::GET, base, "/admin/v1/alerts", token).await?;
        decode(&body)
    }

    async fn request(&self, method: Method, base: &str, path: &str, token: &str) -> Result<Vec<u8>, NodeError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        // The header is built here, not by reqwest, so that an unusable token fails as
        // Unauthorized without reqwest formatting anything about it.
        let mut auth =
            header::HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| NodeError::Unauthorized)?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json");
        if method == Method::POST {
            // Some servers insist on a length for POST; the node takes no body.
            req = req.header(header::CONTENT_LENGTH, "0");
        }
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = read_limited(&mut resp).await?;
        if status.is_success() {
            return Ok(body);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(NodeError::Unauthorized);
        }
        Err(NodeError::Http {
            status: status.as_u16(),
            message: error_message(&body),
        })
    }
}

async fn read_limited(resp: &mut reqwest::Response) -> Result<Vec<u8>, NodeError> {
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(NodeError::Decode(format!(
            "response larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(NodeError::Decode(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unreachable(e: reqwest::Error) -> NodeError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The innermost cause ("Connection refused") is what an operator reading the condition needs.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    NodeError::Unreachable(format!("{kind}: {cause}"))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, NodeError> {
    serde_json::from_slice(body).map_err(|e| NodeError::Decode(e.to_string()))
}

fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    const TOKEN: &str = "s3cret-token";

    type Reply = (StatusCode, [(header::HeaderName, &'static str); 1], String);

    fn json(status: StatusCode, body: serde_json::Value) -> Reply {
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
    }

    fn authorized(headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
    }

    fn unauthorized() -> Reply {
        json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "unauthorized" }))
    }

    fn final_block() -> serde_json::Value {
        serde_json::json!({
            "number": 42,
            "hash": format!("0x{}", "11".repeat(32)),
            "stateRoot": format!("0x{}", "22".repeat(32)),
        })
    }

    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/admin/v1/status",
                get(|h: HeaderMap| async move {
                    if !authorized(&h) {
                        return unauthorized();
                    }
                    json(
                        StatusCode::OK,
                        serde_json::json!({
                            "role": "sequencer", "chainId": 901337, "height": 42,
                            "finalizedHeight": 40, "sealed": true,
                            "finalBlock": final_block(), "alerts": 0,
                            "futureField": "ignored",
                        }),
                    )
                }),
            )
            .route(
                "/admin/v1/seal",
                post(|h: HeaderMap| async move {
                    if !authorized(&h) {
                        return unauthorized();
                    }
                    json(StatusCode::OK, final_block())
                }),
            )
            .route(
                "/admin/v1/certificate/{number}",
                get(|h: HeaderMap, Path(n): Path<u64>| async move {
                    if !authorized(&h) {
                        return unauthorized();
                    }
                    if n != 42 {
                        return json(StatusCode::NOT_FOUND, serde_json::json!({ "error": "not certified" }));
                    }
                    let word = format!("0x{}", "0a".repeat(32));
                    json(
                        StatusCode::OK,
                        serde_json::json!({
                            "chainId": 901337,
                            "rollupId": format!("0x{}", "33".repeat(32)),
                            "number": 42,
                            "blockHash": format!("0x{}", "11".repeat(32)),
                            "stateRoot": format!("0x{}", "22".repeat(32)),
                            "signerBitmap": "0x5",
                            "signers": [format!("0x{}", "44".repeat(20)), format!("0x{}", "55".repeat(20))],
                            "signedStake": "0x64", "totalStake": "0x96",
                            "apkG2": [word, word, word, word],
                            "sigma": [word, word],
                        }),
                    )
                }),
            )
            .route(
                "/admin/v1/alerts",
                get(|h: HeaderMap| async move {
                    if !authorized(&h) {
                        return unauthorized();
                    }
                    json(
                        StatusCode::OK,
                        serde_json::json!([{
                            "number": 7,
                            "expectedStateRoot": format!("0x{}", "01".repeat(32)),
                            "gotStateRoot": format!("0x{}", "02".repeat(32)),
                            "operator": format!("0x{}", "44".repeat(20)),
                            "time": "2025-06-01T12:00:00Z",
                        }]),
                    )
                }),
            )
            .route(
                "/broken/admin/v1/status",
                get(|| async { json(StatusCode::OK, serde_json::json!({ "role": "pilot" })) }),
            )
            .route(
                "/huge/admin/v1/status",
                get(|| async {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        " ".repeat(MAX_RESPONSE_BYTES + 1),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        format!("http://{addr}")
    }

    fn client() -> NodeClient {
        NodeClient::new().expect("client")
    }

    #[tokio::test]
    async fn status_decodes_and_ignores_unknown_fields() {
        let base = serve().await;
        let s = client().status(&base, TOKEN).await.expect("status");
        assert_eq!(s.role, NodeRole::Sequencer);
        assert_eq!(s.chain_id, 901337);
        assert_eq!((s.height, s.finalized_height), (42, 40));
        assert!(s.sealed);
        assert_eq!(s.final_block.map(|b| b.number), Some(42));
    }

    #[tokio::test]
    async fn token_file_newline_is_ignored() {
        let base = serve().await;
        let token = format!("{TOKEN}\n");
        client().status(&base, &token).await.expect("status");
    }

    #[tokio::test]
    async fn seal_returns_final_block() {
        let base = format!("{}/", serve().await);
        let b = client().seal(&base, TOKEN).await.expect("seal");
        assert_eq!(b.number, 42);
        assert_eq!(b.state_root, B256::repeat_byte(0x22));
    }

    #[tokio::test]
    async fn certificate_found_and_not_yet() {
        let base = serve().await;
        let c = client()
            .certificate(&base, TOKEN, 42)
            .await
            .expect("cert")
            .expect("present");
        assert_eq!(c.signer_bitmap, U256::from(5));
        assert_eq!(c.signed_stake, U256::from(100));
        assert_eq!(c.signers.len(), 2);
        assert_eq!(c.apk_g2[3], U256::from_be_bytes([0x0a; 32]));
        assert_eq!(c.rollup_id, B256::repeat_byte(0x33));
        let none = client().certificate(&base, TOKEN, 43).await.expect("404");
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn alerts_decode() {
        let base = serve().await;
        let a = client().alerts(&base, TOKEN).await.expect("alerts");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].got_state_root, B256::repeat_byte(0x02));
    }

    #[tokio::test]
    async fn wrong_token_is_unauthorized_and_not_echoed() {
        let base = serve().await;
        let err = client()
            .certificate(&base, "wrong-token-value", 42)
            .await
            .expect_err("401");
        assert!(matches!(err, NodeError::Unauthorized));
        assert_eq!(err.label(), "node_unauthorized");
        assert!(!format!("{err} {err:?}").contains("wrong-token-value"));
        let err = client().seal(&base, "").await.expect_err("401");
        assert!(matches!(err, NodeError::Unauthorized));
    }

    #[tokio::test]
    async fn unsendable_token_is_unauthorized() {
        let base = serve().await;
        let err = client().status(&base, "bad\u{0}token").await.expect_err("bad header");
        assert!(matches!(err, NodeError::Unauthorized));
    }

    #[tokio::test]
    async fn other_statuses_decode_and_size_errors() {
        let base = serve().await;
        let err = client().status(&format!("{base}/nope"), TOKEN).await.expect_err("404");
        assert!(matches!(err, NodeError::Http { status: 404, .. }));
        assert_eq!(err.label(), "node_http");
        let err = client()
            .status(&format!("{base}/broken"), TOKEN)
            .await
            .expect_err("decode");
        assert_eq!(err.label(), "node_decode");
        let err = client()
            .status(&format!("{base}/huge"), TOKEN)
            .await
            .expect_err("too big");
        assert_eq!(err.label(), "node_decode");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = client()
            .status(&format!("http://{addr}"), TOKEN)
            .await
            .expect_err("closed");
        assert_eq!(err.label(), "node_unreachable");
    }
}
