//! The web viewer: `GET /ui` serves a small page (plain HTML, CSS and one JS module from `ui/`,
//! compiled into the binary, nothing fetched from elsewhere) that decodes tokens and containers,
//! follows receipts and their effects live, and shows what `GET /` says about the gateway.
//! `POST /inspect` is the decoding it uses: the same view as `ucan-gateway inspect --output json`.
//!
//! Decoding happens here rather than in the browser so the page needs no CBOR, base64, gzip or
//! signature code of its own, and shows exactly the verdict the CLI would.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};

use super::error::ApiError;
use crate::gateway::{Gateway, Refusal};
use crate::inspect::Inspection;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// The page may load only its own script and style and talk only to this gateway; it is never
/// framed. Everything it shows comes from the gateway's JSON, written into the page as text.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The viewer's paths, the methods each takes, and its handlers; over any router state that
/// yields the gateway, so the list can join the gateway's own.
pub fn routes<S>() -> Vec<(&'static str, &'static [&'static str], MethodRouter<S>)>
where
    Arc<Gateway>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    vec![
        (
            "/ui",
            &["GET"],
            get(|| asset(INDEX, "text/html; charset=utf-8")),
        ),
        (
            "/ui/app.js",
            &["GET"],
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        ),
        (
            "/ui/style.css",
            &["GET"],
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        ),
        ("/inspect", &["POST"], post(inspect)),
    ]
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Embedded in the binary: a new build is a new version, so a short cache is enough.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `POST /inspect`: a token or container (any form) in the body → every token read, with its CID,
/// signature status and payload, and each invocation's chain root first. Nothing is validated or
/// stored; the body is held to the same cap as an invocation's.
async fn inspect(State(gateway): State<Arc<Gateway>>, body: Body) -> Response {
    let limit = gateway.max_body_bytes();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError(Refusal::too_large(
            "PayloadTooLarge",
            format!("the body exceeds {limit} bytes"),
        ))
        .into_response();
    };
    // Pasted text often ends in a newline or starts with spaces; a raw token or container does not.
    let trimmed = match bytes.first() {
        Some(0x82) => &bytes[..],
        _ => bytes.trim_ascii(),
    };
    match Inspection::of(trimmed) {
        Ok(seen) => axum::Json(seen.to_json()).into_response(),
        Err(e) => ApiError(Refusal::from(e)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_what_the_binary_serves() {
        for reference in ["/ui/app.js", "/ui/style.css"] {
            assert!(
                INDEX.contains(reference),
                "index.html does not load {reference}"
            );
        }
        for text in [INDEX, SCRIPT, STYLE] {
            assert!(
                !text.contains("https://"),
                "the viewer must not load anything from elsewhere"
            );
            assert!(
                !text.contains("http://"),
                "the viewer must not load anything from elsewhere"
            );
        }
        // Text from the gateway goes in as text, never as markup.
        assert!(!SCRIPT.contains("innerHTML"));
    }
}
