//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{aws, events, id_rules, live, ops, pull, subscriptions, wire};
use crate::problem::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Durable, idempotent event backbone: publish and read events in the AWS EventBridge envelope, and subscribe to them with EventBridge patterns and signed webhooks."
    ),
    paths(
        events::publish,
        events::put,
        events::get,
        events::list,
        live::tail,
        id_rules::put,
        id_rules::list,
        id_rules::get,
        id_rules::delete,
        subscriptions::put,
        subscriptions::list,
        subscriptions::get,
        subscriptions::delete,
        subscriptions::pause,
        subscriptions::resume,
        subscriptions::attempts,
        subscriptions::dead_letters,
        subscriptions::redrive,
        subscriptions::purge,
        subscriptions::replay,
        pull::pull,
        pull::ack,
        pull::nack,
        aws::put_events,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(wire::EventIn, wire::EventOut, wire::PublishOut, wire::BatchOut, wire::EventPage, Problem)),
    modifiers(&CommonProblems)
)]
pub struct ApiDoc;

/// Adds the answers every `/v1` route of a kind can give, where its own
/// annotation does not describe them more closely: each write can meet a
/// full queue (503) or a full disk (507), and each body can be malformed
/// (400), too large (413) or not JSON (415).
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
                continue; // operations, and PutEvents, which answers in AWS's own way
            }
            for operation in [&mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                add(operation, "503", "Too much work queued: retry after Retry-After");
                add(
                    operation,
                    "507",
                    "The disk holding the data is full: nothing was stored; retry once space is freed",
                );
                if operation.request_body.is_some() {
                    add(operation, "400", "The body is not JSON");
                    add(operation, "413", "The body is too large");
                    add(operation, "415", "The body is not declared as UTF-8 JSON");
                }
            }
        }
    }
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let problem = Content::new(Some(Ref::from_schema_name("Problem")));
        ResponseBuilder::new().description(description).content("application/problem+json", problem).build().into()
    });
}
