//! The optional `herald.toml`: `serve`'s settings in a file, so a deployment
//! can keep them in git. Its keys are `serve`'s flag names
//! (`max-connections = 5000`); a flag or a `HERALD_*` variable wins over the
//! file. The file is `--config` / `HERALD_CONFIG`, else `./herald.toml` if
//! there is one. `check` reads it too, for `data-dir`.
//!
//! The file's settings become flags appended to the command line, for those
//! that neither the command line nor the environment set; clap then parses
//! and checks them exactly as it does typed flags.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "herald.toml";

/// The subcommands that read the file.
const READERS: [&str; 2] = ["serve", "check"];

/// The command line with the config file's settings appended, and the file
/// (unchanged, and `None`, when the command reads none or there is none).
/// The file's path is appended as `--config`, so the command can say which
/// file it read.
pub fn with_settings(
    argv: Vec<OsString>,
    matches: &ArgMatches,
    cli: &clap::Command,
) -> Result<(Vec<OsString>, Option<PathBuf>), String> {
    let Some((name, given)) = matches.subcommand().filter(|(name, _)| READERS.contains(name)) else {
        return Ok((argv, None));
    };
    let path = match given.get_one::<PathBuf>("config") {
        Some(path) => path.clone(),
        None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
        None => return Ok((argv, None)),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let subcommand = |name| cli.find_subcommand(name).expect("a subcommand of the CLI");
    let mut flags = flags_from(&text, subcommand("serve"), subcommand(name), given)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if given.value_source("config").is_none() {
        flags.push(format!("--config={}", path.display()));
    }
    Ok((argv.into_iter().chain(flags.into_iter().map(OsString::from)).collect(), Some(path)))
}

/// The settings in `text` (every key one of `serve`'s flags) that `command`
/// takes, as `--name=value` flags, leaving out those set on the command line
/// or in the environment.
fn flags_from(
    text: &str,
    serve: &clap::Command,
    command: &clap::Command,
    given: &ArgMatches,
) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let long = |a: &&clap::Arg| a.get_long() == Some(key.as_str()) && key != "config";
        if !serve.get_arguments().any(|a| long(&a)) {
            return Err(format!(
                "unknown setting `{key}`: the settings are `herald serve`'s flags, e.g. `max-connections`"
            ));
        }
        let Some(arg) = command.get_arguments().find(long) else {
            continue; // a setting for `serve` only
        };
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
            toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
                if items.is_empty() {
                    continue;
                }
                items
                    .into_iter()
                    .map(|item| item.as_str().map(str::to_owned).ok_or(()))
                    .collect::<Result<Vec<_>, ()>>()
                    .map_err(|()| format!("`{key}`: expected a list of strings"))?
                    .join(",")
            }
            other => {
                return Err(format!("`{key}`: expected a single string, number or boolean, got {}", other.type_str()));
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
        let cli = Cli::command();
        let matches = cli.clone().try_get_matches_from(argv).unwrap();
        let (name, given) = matches.subcommand().unwrap();
        flags_from(text, cli.find_subcommand("serve").unwrap(), cli.find_subcommand(name).unwrap(), given)
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
    fn check_takes_the_data_dir_and_an_empty_list_is_no_setting() {
        let text = "data-dir = \"/srv/herald\"\nmax-connections = 5\nallowed-target-networks = []\n";
        assert_eq!(flags(text, &["herald", "check"]).unwrap(), ["--data-dir=/srv/herald"]);
        assert_eq!(flags(text, &["herald", "serve"]).unwrap(), ["--data-dir=/srv/herald", "--max-connections=5"]);
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
        let err = flags("account = [\"a\", \"b\"]", &["herald", "serve"]).unwrap_err();
        assert!(err.contains("`account`"), "a list for a single value: {err}");
        assert!(flags("listen = ", &["herald", "serve"]).is_err(), "a syntax error");
    }
}
