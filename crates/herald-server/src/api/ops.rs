//! Health, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers reads and the writer is running.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready", body = crate::problem::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ready().await?;
    let head = *state.store.head().borrow();
    Ok(Json(json!({ "status": "ready", "head": head })))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let head = *state.store.head().borrow();
    metrics::gauge!("herald_store_head_position").set(head as f64);
    // Subscription gauges are read from the store at scrape time, not kept up to date on every delivery.
    for s in state.store.subscriptions().await.unwrap_or_default() {
        let labels = [("subscription", s.name.clone())];
        metrics::gauge!("herald_subscription_lag", &labels).set(head.saturating_sub(s.cursor) as f64);
        metrics::gauge!("herald_subscription_pending", &labels).set(s.pending as f64);
        metrics::gauge!("herald_subscription_dead_letters", &labels).set(s.dead_letters as f64);
        metrics::gauge!("herald_subscription_in_flight", &labels).set(state.dispatcher.in_flight(&s.name) as f64);
    }
    let text = crate::metrics::handle().render();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> Response {
    let doc = super::openapi::ApiDoc::openapi().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}
