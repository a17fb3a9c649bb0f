//! The ucanto transport at the HTTP edge: which requests are ucanto messages (by media type), content
//! negotiation as `@ucanto/transport` does it (415 for a media type nobody here reads, 406 when the
//! client will not take a CAR back, 400 for a malformed message: the statuses `@ucanto/server`
//! uses, with the gateway's JSON error body, since `@ucanto/client` reads only the status), and the
//! CAR answer.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, edge_error};
use crate::gateway::{Gateway, RefusalClass};
use crate::ucanto::CONTENT_TYPE;

/// Media types of `POST /` bodies that carry a UCAN 1.0 container (including what curl and browsers
/// send by default for a text body).
const CONTAINER_TYPES: [&str; 3] = [
    "application/octet-stream",
    "text/plain",
    "application/x-www-form-urlencoded",
];

/// Which reader a `POST /` goes to.
pub(super) enum Transport {
    /// A UCAN 1.0 container.
    Container,
    /// A ucanto CAR message.
    Ucanto,
}

/// Chooses the transport from `content-type`, or answers 415 / 406 right away.
pub(super) fn select(headers: &HeaderMap) -> Result<Transport, Box<Response>> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Transport::Container);
    };
    let media = media_type(content_type.to_str().unwrap_or(""));
    if media == CONTENT_TYPE {
        return if accepts_car(headers) {
            Ok(Transport::Ucanto)
        } else {
            Err(Box::new(refuse(
                StatusCode::NOT_ACCEPTABLE,
                "NotAcceptable",
                CONTENT_TYPE,
                "The requested resource cannot be served in the requested content type. Please specify a supported content type using the Accept header.",
            )))
        };
    }
    if CONTAINER_TYPES.contains(&media.as_str()) {
        return Ok(Transport::Container);
    }
    let accept = format!("{CONTENT_TYPE}, {}", CONTAINER_TYPES[..2].join(", "));
    Err(Box::new(refuse(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        &accept,
        "The server cannot process the request because the payload format is not supported. Please check the content-type header and try again with a supported media type.",
    )))
}

/// `type/subtype`, lowercase, parameters dropped.
fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether `accept` (absent: anything) admits a CAR answer. Entries with `q=0` refuse.
fn accepts_car(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return true;
    };
    let accept = accept.to_str().unwrap_or("");
    accept.split(',').any(|entry| {
        let refused = entry
            .split(';')
            .skip(1)
            .any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
        let media = media_type(entry);
        !refused && matches!(media.as_str(), "*/*" | "application/*" | CONTENT_TYPE)
    })
}

/// A refusal in the JSON shape, with an `accept` header naming what would be taken.
fn refuse(status: StatusCode, name: &'static str, accept: &str, message: &'static str) -> Response {
    let mut response = edge_error(status, name, message);
    if let Ok(value) = HeaderValue::from_str(accept) {
        response.headers_mut().insert(header::ACCEPT, value);
    }
    response
}

/// Runs a ucanto message and answers with the report CAR.
pub(super) async fn invoke(gateway: Arc<Gateway>, body: Body) -> Response {
    let result = async {
        let body = super::read_body(&gateway, body).await?;
        gateway.invoke_ucanto(&body).await
    }
    .await;
    match result {
        Ok(car) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            car,
        )
            .into_response(),
        // As @ucanto/server words it; the detail is the decoder's, never an internal one.
        Err(refusal) if refusal.class == RefusalClass::Malformed => malformed(&refusal),
        Err(refusal) => ApiError(refusal).into_response(),
    }
}

/// 400 for a body that is not a ucanto message, worded as `@ucanto/server` words it.
fn malformed(refusal: &crate::gateway::Refusal) -> Response {
    edge_error(
        StatusCode::BAD_REQUEST,
        refusal.name,
        format!("Malformed payload - {}", refusal.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn status(pairs: &[(&'static str, &'static str)]) -> Result<bool, u16> {
        match select(&headers(pairs)) {
            Ok(Transport::Ucanto) => Ok(true),
            Ok(Transport::Container) => Ok(false),
            Err(response) => Err(response.status().as_u16()),
        }
    }

    #[test]
    fn selects_the_transport_by_media_type() {
        assert_eq!(status(&[]), Ok(false));
        assert_eq!(
            status(&[("content-type", "application/octet-stream")]),
            Ok(false)
        );
        assert_eq!(
            status(&[("content-type", "text/plain; charset=utf-8")]),
            Ok(false)
        );
        assert_eq!(status(&[("content-type", CONTENT_TYPE)]), Ok(true));
        assert_eq!(
            status(&[("content-type", "Application/VND.ipld.car; version=1")]),
            Ok(true)
        );
        assert_eq!(status(&[("content-type", "application/json")]), Err(415));
        assert_eq!(
            status(&[("content-type", "application/vnd.ipld.dag-json")]),
            Err(415)
        );
    }

    #[test]
    fn a_car_request_must_accept_a_car_answer() {
        let car = ("content-type", CONTENT_TYPE);
        for ok in [
            "*/*",
            "application/*",
            CONTENT_TYPE,
            "text/html, application/vnd.ipld.car;q=0.5",
        ] {
            assert_eq!(status(&[car, ("accept", ok)]), Ok(true), "{ok}");
        }
        for refused in ["application/json", "text/*", "application/vnd.ipld.car;q=0"] {
            assert_eq!(status(&[car, ("accept", refused)]), Err(406), "{refused}");
        }
    }
}
