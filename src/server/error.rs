//! The one conversion from a gateway refusal to an HTTP response. It has no side effects (logging is
//! done by the handler that saw the request), and it never shows internals to clients: store or
//! executor failures become a generic message.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::gateway::{Refusal, RefusalClass};

/// A refusal on its way out as `{"error":{"name":…,"message":…}}`.
#[derive(Debug)]
pub struct ApiError(pub Refusal);

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError(refusal)
    }
}

/// The HTTP status for each class of refusal.
pub fn status(class: RefusalClass) -> StatusCode {
    match class {
        RefusalClass::Malformed => StatusCode::BAD_REQUEST,
        RefusalClass::Unauthenticated => StatusCode::UNAUTHORIZED,
        RefusalClass::Forbidden => StatusCode::FORBIDDEN,
        RefusalClass::NotFound => StatusCode::NOT_FOUND,
        RefusalClass::Replayed => StatusCode::CONFLICT,
        RefusalClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RefusalClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RefusalClass::NotExtended => StatusCode::NOT_EXTENDED,
        RefusalClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Refusal {
            class,
            name,
            message,
            missing,
            retry_after,
        } = self.0;
        let message = if class == RefusalClass::Unavailable {
            "the gateway cannot serve this request right now".to_owned()
        } else {
            message
        };
        let mut error = serde_json::json!({ "name": name, "message": message });
        if !missing.is_empty() {
            error["missing"] = missing.iter().map(|c| c.to_string()).collect();
        }
        let mut response = (
            status(class),
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// `{"error":{"name":…,"message":…}}` with `status`: the one shape of every refusal, whether the
/// gateway or the HTTP edge refused.
pub fn edge_error(status: StatusCode, name: &'static str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": { "name": name, "message": message.into() } });
    (status, axum::Json(body)).into_response()
}

/// The answer for a path the gateway does not serve.
pub async fn not_found(uri: Uri) -> Response {
    let path: String = uri.path().chars().take(256).collect();
    edge_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no such path: {path} (GET /openapi.json lists the API)"),
    )
}

/// The answer for a method a path does not take (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    edge_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "this path does not take this method (see the Allow header)",
    )
}
