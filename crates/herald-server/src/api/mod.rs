//! The HTTP API: one module per resource, each handler a thin translation
//! between HTTP and [`crate::ingest`] or the store.

pub mod aws;
pub mod events;
mod extract;
pub mod id_rules;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod pull;
pub mod subscriptions;
pub mod wire;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::body::{AdmittedBody, BODIES_OVERLOADED};
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", post(aws::put_events))
        .route("/v1/events", post(events::publish).get(events::list))
        .route("/v1/events/live", get(live::tail))
        .route("/v1/events/{id}", put(events::put).get(events::get))
        .route("/v1/id-rules", get(id_rules::list))
        .route("/v1/id-rules/{detail_type}", put(id_rules::put).get(id_rules::get).delete(id_rules::delete))
        .route("/v1/subscriptions", get(subscriptions::list))
        .route(
            "/v1/subscriptions/{name}",
            put(subscriptions::put).get(subscriptions::get).delete(subscriptions::delete),
        )
        .route("/v1/subscriptions/{name}/pause", post(subscriptions::pause))
        .route("/v1/subscriptions/{name}/resume", post(subscriptions::resume))
        .route("/v1/subscriptions/{name}/attempts", get(subscriptions::attempts))
        .route("/v1/subscriptions/{name}/dead-letters", get(subscriptions::dead_letters).delete(subscriptions::purge))
        .route("/v1/subscriptions/{name}/dead-letters/redrive", post(subscriptions::redrive))
        .route("/v1/subscriptions/{name}/replay", post(subscriptions::replay))
        .route("/v1/subscriptions/{name}/pull", post(pull::pull))
        .route("/v1/subscriptions/{name}/ack", post(pull::ack))
        .route("/v1/subscriptions/{name}/nack", post(pull::nack))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        // 5xx answers are logged where they arise (`ApiError::log_failure`;
        // the store throttles its own): an overload or a full disk would
        // otherwise flood the log with a line per request refused.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// Admits a request: bounds the requests handled at once (past the limit,
/// answer 503 with `Retry-After` at once rather than queue without bound),
/// gives its body a deadline and charges its bytes to the body budget (503
/// past it). The permit and the charge are released when the handler
/// returns (a live stream holds a permit of its own).
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return ApiError::Overloaded("too many requests in flight").into_response();
    };
    if state.body_budget.refuses_before_continue(request.headers()) {
        return ApiError::Overloaded(BODIES_OVERLOADED).into_response();
    }
    let charge = state.body_budget.charge();
    let timeout = state.config.body_read_timeout;
    let response = next.run(request.map(|body| Body::new(AdmittedBody::new(body, timeout, charge.clone())))).await;
    drop(charge); // held until here: the body's bytes live until the handler returns
    response
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} is not allowed on {}", request.method(), request.uri().path()))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no route for {} {}", request.method(), request.uri().path()))
}
