use std::process::ExitCode;

use anyhow::Result;
use herald_store::sqlite;

use crate::args::CheckArgs;

/// Runs the full check; exit status 2 when the store is damaged (a database
/// file without Herald's tables included), 1 when it cannot be checked.
pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let file = args.data_dir.join(sqlite::DB_FILE);
    match sqlite::check(&args.data_dir) {
        Ok(problems) if problems.is_empty() => {
            super::print_line(format_args!("ok: {} passed the integrity check", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(problems) => {
            eprintln!("damaged: {} failed the integrity check:", file.display());
            for p in problems.iter().take(50) {
                eprintln!("  {p}");
            }
            Ok(ExitCode::from(2))
        }
        Err(herald_store::StoreError::Corrupt { path, detail }) => {
            eprintln!("damaged: {} cannot be read: {detail}", path.display());
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
