//! Size limits shared by every way into Herald (native API, AWS PutEvents, CloudEvents).

/// Largest request body accepted by any ingest endpoint.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Largest `detail` of one event, serialized.
pub const MAX_DETAIL_BYTES: usize = 256 * 1024;
/// Longest `id`, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Longest short text field (`source`, `detail-type`, `version`, `account`, `region`, `stream`).
pub const MAX_NAME_CHARS: usize = 256;
/// Most entries in `resources`.
pub const MAX_RESOURCES: usize = 100;
/// Most JSON pointers in one id rule.
pub const MAX_ID_RULE_FIELDS: usize = 16;
