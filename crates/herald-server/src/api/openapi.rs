//! The OpenAPI document, generated from the handlers' annotations.

use herald_core::identity::RULE_ROOTS;
use herald_core::limits::{MAX_ID_CHARS, MAX_ID_RULE_FIELDS, MAX_NAME_CHARS, MAX_RESOURCES};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ArrayItems, KnownFormat, Schema, SchemaFormat};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
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
    modifiers(&CommonProblems, &Constraints, &Links)
)]
pub struct ApiDoc;

/// Serves problems as problem+json, and adds the answers every `/v1` route
/// of a kind can give, where its own annotation does not describe them more
/// closely: a query parameter can be invalid (400); each write can meet a
/// full queue (503) or a full disk (507), and each body can be malformed
/// (400), too large (413), not JSON (415) or not what the operation takes (422).
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
                continue; // operations, and PutEvents, which answers in AWS's own way
            }
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                problems_as_problem_json(operation);
                let query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
                if query {
                    add(operation, "400", "A query parameter is invalid");
                }
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
                    add(operation, "422", "The body is JSON, but not what this operation takes");
                }
            }
        }
    }
}

/// An OpenAPI link from an operation that creates a resource to the
/// operations that use it, so a client generator or a stateful test (such as
/// schemathesis's) can follow a created name instead of guessing one.
struct CreatedLink {
    path: &'static str,
    method: &'static str,
    /// The answers that mean "created" (or "already there").
    statuses: &'static [&'static str],
    parameter: &'static str,
    /// An OpenAPI runtime expression for the parameter's value.
    value: &'static str,
    operations: &'static [&'static str],
}

const LINKS: &[CreatedLink] = &[
    CreatedLink {
        path: "/v1/events",
        method: "post",
        statuses: &["201"],
        parameter: "id",
        value: "$response.body#/id",
        operations: &["getEvent", "putEvent"],
    },
    CreatedLink {
        path: "/v1/events/{id}",
        method: "put",
        statuses: &["200", "201"],
        parameter: "id",
        value: "$request.path.id",
        operations: &["getEvent"],
    },
    CreatedLink {
        path: "/v1/id-rules/{detail_type}",
        method: "put",
        statuses: &["200"],
        parameter: "detail_type",
        value: "$request.path.detail_type",
        operations: &["getIdRule", "deleteIdRule"],
    },
    CreatedLink {
        path: "/v1/subscriptions/{name}",
        method: "put",
        statuses: &["200", "201"],
        parameter: "name",
        value: "$request.path.name",
        operations: &[
            "getSubscription",
            "deleteSubscription",
            "pauseSubscription",
            "resumeSubscription",
            "listAttempts",
            "listDeadLetters",
            "redriveDeadLetters",
            "purgeDeadLetters",
            "replay",
            "pull",
            "ack",
            "nack",
        ],
    },
];

struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for created in LINKS {
            let Some(item) = openapi.paths.paths.get_mut(created.path) else { continue };
            let operation = if created.method == "post" { item.post.as_mut() } else { item.put.as_mut() };
            let Some(operation) = operation else { continue };
            for status in created.statuses {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else { continue };
                for &target in created.operations {
                    let link = LinkBuilder::new().operation_id(target).parameter(created.parameter, created.value);
                    response.links.insert(target.to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}

/// A problem is served as `application/problem+json` (RFC 9457), whatever
/// an annotation left as the default.
fn problems_as_problem_json(operation: &mut Operation) {
    let is_problem = |content: &RefOr<Content>| matches!(content, RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. }) if r.ref_location.ends_with("/Problem"));
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response
            && response.content.get("application/json").is_some_and(is_problem)
            && let Some(content) = response.content.shift_remove("application/json")
        {
            response.content.insert("application/problem+json".to_owned(), content);
        }
    }
}

/// A subscription's name, as `subscriptions::check_name` takes it.
fn constrain_subscription_name(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.name == "name"
            && let Some(RefOr::T(Schema::Object(name))) = &mut parameter.schema
        {
            name.pattern = Some(format!("^[A-Za-z0-9._-]{{1,{}}}$", subscriptions::MAX_NAME_CHARS));
        }
    }
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let problem = Content::new(Some(Ref::from_schema_name("Problem")));
        ResponseBuilder::new().description(description).content("application/problem+json", problem).build().into()
    });
}

/// Writes the rules the handlers check into the schemas, so a client (or a
/// test generator) knows what is accepted without trying. A published
/// event's (`herald_core::envelope`): text fields are 1 to 256 characters,
/// not only whitespace, without control characters; `time` is RFC 3339;
/// `resources` has at most 100 non-empty strings. A subscription's name. An
/// id rule's fields (`herald_core::IdRule::new`).
struct Constraints;

/// A text field: no control character (C0, DEL, C1), and one character that
/// is not whitespace.
const TEXT_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

impl Modify for Constraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if path.starts_with("/v1/subscriptions/{name}") {
                let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete];
                operations.into_iter().flatten().for_each(constrain_subscription_name);
            }
        }
        let Some(schemas) = openapi.components.as_mut().map(|c| &mut c.schemas) else { return };
        if let Some(RefOr::T(Schema::Object(rule))) = schemas.get_mut("IdRuleIn")
            && let Some(RefOr::T(Schema::Array(fields))) = rule.properties.get_mut("fields")
        {
            fields.max_items = Some(MAX_ID_RULE_FIELDS);
            if let ArrayItems::RefOrSchema(item) = &mut fields.items
                && let RefOr::T(Schema::Object(item)) = item.as_mut()
            {
                // A JSON pointer (RFC 6901: '~' only as "~0" or "~1") into one of the roots.
                item.pattern = Some(format!("^/({})(/([^~]|~[01])*)?$", RULE_ROOTS.join("|")));
            }
        }
        let Some(RefOr::T(Schema::Object(event))) = schemas.get_mut("EventIn") else { return };
        let texts = [("id", MAX_ID_CHARS)]
            .into_iter()
            .chain(["version", "detail-type", "source", "account", "region", "stream"].map(|n| (n, MAX_NAME_CHARS)));
        for (name, max_chars) in texts {
            if let Some(RefOr::T(Schema::Object(field))) = event.properties.get_mut(name) {
                field.min_length = Some(1);
                field.max_length = Some(max_chars);
                field.pattern = Some(TEXT_PATTERN.to_owned());
            }
        }
        if let Some(RefOr::T(Schema::Object(time))) = event.properties.get_mut("time") {
            time.format = Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
        }
        if let Some(RefOr::T(Schema::Array(resources))) = event.properties.get_mut("resources") {
            resources.max_items = Some(MAX_RESOURCES);
            if let ArrayItems::RefOrSchema(item) = &mut resources.items
                && let RefOr::T(Schema::Object(item)) = item.as_mut()
            {
                item.min_length = Some(1);
            }
        }
    }
}
