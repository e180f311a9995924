//! Health, readiness, metrics and the OpenAPI document.

use std::fmt::Write;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::wire::{Alive, Ready};
use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "ops", responses((status = 200, description = "Alive", body = Alive)))]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// The store answers reads, the writer is running, and the data directory's
/// disk has room to write (a full disk is a 507, as publishes get).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready", body = crate::problem::Problem),
        (status = 507, description = "The data directory's disk is full", body = crate::problem::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.store.ready().await?;
    let head = *state.store.head().borrow();
    Ok(Json(Ready { status: "ready", head }))
}

/// Per subscription, in the order [`metrics`] computes them.
const SUBSCRIPTION_GAUGES: [&str; 4] = [
    "herald_subscription_lag",
    "herald_subscription_pending",
    "herald_subscription_dead_letters",
    "herald_subscription_in_flight",
];

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let head = *state.store.head().borrow();
    metrics::gauge!("herald_store_head_position").set(head as f64);
    metrics::gauge!("herald_webhook_circuits_open").set(state.dispatcher.open_circuits() as f64);
    metrics::gauge!("herald_request_body_bytes_held").set(state.body_budget.held() as f64);
    metrics::gauge!("herald_response_bytes_held").set(state.response_budget.held() as f64);
    let mut text = crate::metrics::handle().render();
    // Subscription gauges are read from the store at scrape time, and
    // delivery counts from the workers, and written here rather than through
    // the recorder, which would keep reporting a deleted subscription's last
    // values (and keep its label sets forever).
    let rows: Vec<(String, [u64; 4])> = state
        .store
        .subscriptions()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let in_flight = state.dispatcher.in_flight(&s.name) as u64;
            (s.name, [head.saturating_sub(s.cursor), s.pending, s.dead_letters, in_flight])
        })
        .collect();
    if !rows.is_empty() {
        for (i, gauge) in SUBSCRIPTION_GAUGES.iter().enumerate() {
            let _ = writeln!(text, "# TYPE {gauge} gauge");
            for (name, values) in &rows {
                // Names are limited to A-Z a-z 0-9 . _ -: nothing to escape in a label.
                let _ = writeln!(text, "{gauge}{{subscription=\"{name}\"}} {}", values[i]);
            }
        }
    }
    crate::metrics::write_delivery_stats(&mut text, &state.dispatcher.delivery_stats());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi", tag = "ops", responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> Response {
    let doc = super::openapi::ApiDoc::openapi().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}
