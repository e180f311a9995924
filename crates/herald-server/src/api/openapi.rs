//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

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
    components(schemas(wire::EventIn, wire::EventOut, wire::PublishOut, wire::BatchOut, wire::EventPage, Problem))
)]
pub struct ApiDoc;
