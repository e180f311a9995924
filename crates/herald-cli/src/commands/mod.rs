pub mod check;
pub mod events;
pub mod publish;
pub mod serve;
pub mod subs;
pub mod tail;

use std::io::Write;

/// The reader of this command's output went away (`herald events list |
/// head`): the command stops quietly, as Unix tools do, rather than panic.
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Prints one line of the command's output.
pub fn print_line(line: impl std::fmt::Display) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        other => Ok(other?),
    }
}
