//! Herald's pure logic: everything that decides *what* an event is, with no I/O.
//!
//! - [`envelope`]: the EventBridge-shaped [`Event`] and its validation from JSON.
//! - [`canonical`]: canonical JSON, used for content comparison and derived ids.
//! - [`identity`]: how an event gets its id (given, `Idempotency-Key`, id rule, UUIDv7).
//! - [`json`]: JSON text into values, refusing an object that names a member twice.
//! - [`formats`]: other wire formats (CloudEvents, AWS PutEvents) mapped onto the envelope.
//! - [`limits`]: the size limits every entry point shares.
//! - [`network`]: IP networks and which addresses are internal (egress checks).
//! - [`pattern`]: EventBridge event patterns, compiled and matched.
//! - [`subscription`]: what a subscription declares; [`signature`]: Standard Webhooks signing.

pub mod canonical;
pub mod envelope;
pub mod error;
pub mod formats;
pub mod identity;
pub mod json;
pub mod limits;
pub mod network;
pub mod pattern;
pub mod signature;
pub mod subscription;

pub use envelope::{Event, EventDraft, MAX_POSITION, Position};
pub use error::{FieldError, Invalid};
pub use identity::IdRule;
