pub mod check;
pub mod events;
pub mod publish;
pub mod serve;
pub mod subs;
pub mod tail;
