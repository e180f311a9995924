//! The optional `herald.toml`: `serve`'s settings in a file, so a deployment
//! can keep them in git. Its keys are `serve`'s flag names
//! (`max-connections = 5000`); a flag or a `HERALD_*` variable wins over the
//! file. The file is `--config` / `HERALD_CONFIG`, else `./herald.toml` if
//! there is one.
//!
//! The file's settings become flags appended to the command line, for those
//! that neither the command line nor the environment set; clap then parses
//! and checks them exactly as it does typed flags.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "herald.toml";

/// The config file `serve` reads, if any.
pub fn path(matches: &ArgMatches) -> Option<PathBuf> {
    let Some(("serve", serve)) = matches.subcommand() else {
        return None;
    };
    match serve.get_one::<PathBuf>("config") {
        Some(path) => Some(path.clone()),
        None => Path::new(DEFAULT_FILE).is_file().then(|| PathBuf::from(DEFAULT_FILE)),
    }
}

/// The command line with the settings of the config file at `path` appended.
pub fn with_settings(
    argv: Vec<OsString>,
    path: &Path,
    matches: &ArgMatches,
    serve: &clap::Command,
) -> Result<Vec<OsString>, String> {
    let given = matches.subcommand_matches("serve").ok_or("the config file is for `herald serve`")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let flags = flags_from(&text, serve, given).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(argv.into_iter().chain(flags.into_iter().map(OsString::from)).collect())
}

/// The settings in `text` as `--name=value` flags, leaving out those set on
/// the command line or in the environment.
fn flags_from(text: &str, serve: &clap::Command, given: &ArgMatches) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config" && key != "help")
            .ok_or_else(|| {
                format!("unknown setting `{key}`: the settings are `herald serve`'s flags, e.g. `max-connections`")
            })?;
        if matches!(
            given.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| format!("`{key}`: expected a list of strings"))?
                .join(","),
            other => {
                return Err(format!("`{key}`: expected a string, number, boolean or list, got {}", other.type_str()));
            }
        };
        flags.push(format!("--{key}={value}"));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::args::Cli;

    fn flags(text: &str, argv: &[&str]) -> Result<Vec<String>, String> {
        let command = Cli::command();
        let matches = command.clone().try_get_matches_from(argv).unwrap();
        let serve = command.find_subcommand("serve").unwrap();
        flags_from(text, serve, matches.subcommand_matches("serve").unwrap())
    }

    #[test]
    fn settings_become_flags_unless_given_on_the_command_line() {
        let text = r#"
            listen = "0.0.0.0:9000"
            max-connections = 5000
            allow-private-targets = true
            allowed-target-networks = ["10.0.0.0/8", "192.168.1.0/24"]
        "#;
        let mut got = flags(text, &["herald", "serve", "--max-connections", "7"]).unwrap();
        got.sort();
        assert_eq!(
            got,
            [
                "--allow-private-targets=true",
                "--allowed-target-networks=10.0.0.0/8,192.168.1.0/24",
                "--listen=0.0.0.0:9000",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_unusable_values_are_errors_naming_the_key() {
        let err = flags("max-conections = 5", &["herald", "serve"]).unwrap_err();
        assert!(err.contains("`max-conections`"), "{err}");
        let err = flags("config = \"other.toml\"", &["herald", "serve"]).unwrap_err();
        assert!(err.contains("`config`"), "{err}");
        let err = flags("listen = { host = \"x\" }", &["herald", "serve"]).unwrap_err();
        assert!(err.contains("`listen`"), "{err}");
        let err = flags("allowed-target-networks = [1, 2]", &["herald", "serve"]).unwrap_err();
        assert!(err.contains("`allowed-target-networks`"), "{err}");
        assert!(flags("listen = ", &["herald", "serve"]).is_err(), "a syntax error");
    }
}
