//! axum's `Path` and `Query` extractors, with their rejections answered as
//! RFC 9457 problems like every other error (axum answers them in plain
//! text): a repeated or unparsable query parameter, a path that is not
//! UTF-8.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// The path's parameters; a path that does not decode is a `400` naming it.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::InvalidParameter { name: "path".into(), message: rejection.body_text() }),
        }
    }
}

/// The query string's parameters; one that does not parse is a `400`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        require_utf8(parts.uri.query().unwrap_or(""))?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let message = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
                // serde names a repeated parameter in its message: name it as the parameter too.
                let repeated = message.strip_prefix("duplicate field `").and_then(|rest| rest.strip_suffix('`'));
                let name = repeated.unwrap_or("query string").to_owned();
                Err(ApiError::InvalidParameter { name, message })
            }
        }
    }
}

/// Refuses a query parameter whose name or value is not UTF-8 once
/// percent-decoded: axum would decode it lossily, to U+FFFD, and a filter
/// would then match events it was never given.
fn require_utf8(query: &str) -> Result<(), ApiError> {
    use percent_encoding::percent_decode_str;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode_str(name).decode_utf8().is_err() || percent_decode_str(value).decode_utf8().is_err() {
            let name = percent_decode_str(name).decode_utf8_lossy().into_owned();
            return Err(ApiError::InvalidParameter { name, message: "is not UTF-8 once percent-decoded".into() });
        }
    }
    Ok(())
}
