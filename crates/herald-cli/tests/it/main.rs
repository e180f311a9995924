//! Black-box tests: each starts the real `herald` binary as a process on a
//! fresh data directory and speaks HTTP to it, as a user would.

mod cli;
mod durability;
mod harness;
mod hostile;
mod publish;
mod reads;
mod receiver;
mod subscriptions;
