//! `/v1/id-rules`: constructing ids from the event itself, per detail-type.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::envelope::text_problem;
use herald_core::limits::MAX_NAME_CHARS;
use herald_core::{IdRule, Invalid};
use serde_json::Value;

use super::extract::Path;
use super::wire::IdRuleList;
use crate::body::{parse_json, read_limited, require_json};
use crate::problem::ApiError;
use crate::state::AppState;

/// Create or replace the id rule of a detail-type.
///
/// Events of this detail-type published without an `id` get one derived from
/// their source, detail-type and the values at these JSON pointers, so a
/// webhook redelivered is stored once.
#[utoipa::path(put, path = "/v1/id-rules/{detail_type}", operation_id = "putIdRule", tag = "id-rules",
    params(("detail_type" = String, Path)),
    request_body(content = super::wire::documented::IdRuleIn, description = r#"{"fields": ["/detail/user_id", "/detail/tweet_id"]}"#),
    responses(
        (status = 200, description = "The rule as stored", body = super::wire::documented::IdRuleOut),
        (status = 422, description = "Invalid rule", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Path(detail_type): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(problem) = text_problem(&detail_type, MAX_NAME_CHARS) {
        return Err(ApiError::InvalidParameter { name: "detail_type".into(), message: problem });
    }
    require_json(&headers)?;
    let value = parse_json(&read_limited(&headers, body).await?)?;
    let rule = IdRule::new(detail_type, fields(&value).map_err(ApiError::InvalidRequest)?)
        .map_err(ApiError::InvalidRequest)?;
    let _writing = state.id_rule_writes.lock().await;
    state.store.put_id_rule(rule.clone()).await?;
    if let Ok(mut rules) = state.id_rules.write() {
        rules.insert(rule.detail_type.clone(), rule.clone());
    }
    Ok(Json(rule).into_response())
}

fn fields(value: &Value) -> Result<Vec<String>, Invalid> {
    let Some(object) = value.as_object() else {
        return Err(Invalid::one("", "must be a JSON object with \"fields\""));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "fields") {
        return Err(Invalid::one(format!("/{unknown}"), "unknown field; expected only \"fields\""));
    }
    match object.get("fields") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| Invalid::one(format!("/fields/{i}"), "must be a string"))
            })
            .collect(),
        _ => Err(Invalid::one("/fields", "must be an array of JSON pointers")),
    }
}

#[utoipa::path(get, path = "/v1/id-rules", operation_id = "listIdRules", tag = "id-rules", responses((status = 200, description = "All id rules", body = IdRuleList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<IdRuleList>, ApiError> {
    Ok(Json(IdRuleList { rules: state.store.id_rules().await? }))
}

#[utoipa::path(get, path = "/v1/id-rules/{detail_type}", operation_id = "getIdRule", tag = "id-rules", params(("detail_type" = String, Path)),
    responses((status = 200, description = "The rule", body = super::wire::documented::IdRuleOut), (status = 404, description = "No rule", body = crate::problem::Problem)))]
pub async fn get(State(state): State<AppState>, Path(detail_type): Path<String>) -> Result<Json<IdRule>, ApiError> {
    let rules = state.store.id_rules().await?;
    rules.into_iter().find(|r| r.detail_type == detail_type).map(Json).ok_or_else(|| no_rule(&detail_type))
}

#[utoipa::path(delete, path = "/v1/id-rules/{detail_type}", operation_id = "deleteIdRule", tag = "id-rules", params(("detail_type" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No rule", body = crate::problem::Problem)))]
pub async fn delete(State(state): State<AppState>, Path(detail_type): Path<String>) -> Result<StatusCode, ApiError> {
    let _writing = state.id_rule_writes.lock().await;
    if !state.store.delete_id_rule(&detail_type).await? {
        return Err(no_rule(&detail_type));
    }
    if let Ok(mut rules) = state.id_rules.write() {
        rules.remove(&detail_type);
    }
    Ok(StatusCode::NO_CONTENT)
}

fn no_rule(detail_type: &str) -> ApiError {
    ApiError::NotFound(format!("no id rule for detail-type {detail_type}"))
}
