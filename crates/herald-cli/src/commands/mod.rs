pub mod check;
pub mod events;
pub mod publish;
pub mod serve;
pub mod tail;
