//! Wire formats other than Herald's own, mapped onto the envelope so that
//! existing clients publish without changing code. Each mapping produces an
//! envelope-shaped JSON object that then goes through the same validation as a
//! native event; errors point at the client's own field names.

pub mod aws;
pub mod cloudevents;
