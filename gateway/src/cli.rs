//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "SIP/MCU conferencing gateway")]
pub struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults apply.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding the config file and GATEWAY_DATABASE_URL
    /// (sqlite://FILE or postgres://USER:PASS@HOST/DB).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Log format, overriding `log.format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway until SIGINT or SIGTERM.
    Run,
    /// Manage conference rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Manage SIP accounts for desk phones.
    #[command(subcommand)]
    User(UserCommand),
    /// List the phones registered now.
    Registrations {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List finished calls (call records), newest first.
    Calls {
        /// Only calls to this room.
        #[arg(long)]
        room: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and print the settings in effect.
    CheckConfig {
        /// The file to check (default: --config, or the built-in defaults).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Add a room.
    Add(RoomAdd),
    /// List rooms.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a room.
    Remove {
        /// The room's number.
        number: String,
    },
}

#[derive(Debug, Args)]
pub struct RoomAdd {
    /// The number callers dial.
    #[arg(long)]
    pub number: String,
    #[arg(long, default_value = "")]
    pub name: String,
    /// PIN callers must enter (digits).
    #[arg(long)]
    pub pin: Option<String>,
    /// PIN that joins as moderator (digits).
    #[arg(long)]
    pub moderator_pin: Option<String>,
    #[arg(long)]
    pub max_participants: Option<u32>,
    /// A number arriving through a trunk that leads to this room (repeatable).
    #[arg(long = "did")]
    pub dids: Vec<String>,
    /// The video layout its conferences start in: speaker, grid or speaker-strip (else the
    /// config's).
    #[arg(long, value_parser = layout)]
    pub layout: Option<crate::config::VideoLayout>,
}

fn layout(name: &str) -> Result<crate::config::VideoLayout, String> {
    crate::config::VideoLayout::from_name(name)
        .filter(|layout| *layout != crate::config::VideoLayout::Presenter)
        .ok_or_else(|| format!("`{name}`: one of speaker, grid, speaker-strip"))
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account (or with --replace, set a new password).
    Add {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        replace: bool,
    },
    /// Add many accounts at once (or with --replace, set their passwords): one `name
    /// password` per line of FILE (`-` reads standard input); blank lines and lines starting
    /// with `#` are skipped. All are added, or none.
    Import {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
    /// List accounts.
    List,
    /// Remove an account and its registrations.
    Remove { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn config_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["gateway", "run", "--config", "x.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        let cli = Cli::try_parse_from([
            "gateway",
            "room",
            "add",
            "--number",
            "1000",
            "--pin",
            "4321",
            "--database",
            "sqlite://a.db",
        ])
        .unwrap();
        assert_eq!(cli.database.as_deref(), Some("sqlite://a.db"));
        assert!(
            matches!(cli.command, Command::Room(RoomCommand::Add(RoomAdd { ref number, .. })) if number == "1000")
        );
        let add = |layout: &str| {
            Cli::try_parse_from(["gateway", "room", "add", "--number", "1", "--layout", layout])
        };
        let cli = add("speaker-strip").unwrap();
        assert!(matches!(
            cli.command,
            Command::Room(RoomCommand::Add(RoomAdd {
                layout: Some(crate::config::VideoLayout::SpeakerStrip),
                ..
            }))
        ));
        for bad in ["presenter", "mosaic"] {
            let error = add(bad).unwrap_err().to_string();
            assert!(error.contains("one of speaker, grid, speaker-strip"), "{error}");
        }
    }
}
