//! The gateway binary: SIP/MCU conferencing gateway.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use gateway::app;
use gateway::cli::{Cli, Command, RoomCommand, UserCommand};
use gateway::clock::unix_ms;
use gateway::config::{Config, LogFormat};
use gateway::storage::{Room, Storage};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = match &cli.command {
        Command::CheckConfig { file: Some(file) } => Some(file.clone()),
        _ => cli.config.clone(),
    };
    let database = cli.database.clone();
    // Start-up and every SIGHUP read the configuration the same way.
    let load = move || -> anyhow::Result<Config> {
        let mut config = Config::load(config_path.as_deref())?;
        if let Some(url) = &database {
            config.database.url = url.clone();
            config.validate()?;
        }
        Ok(config)
    };
    let mut config = load()?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    init_logging(&config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Run => runtime.block_on(app::run(config, Box::new(load))),
        Command::CheckConfig { .. } => {
            println!("configuration OK");
            println!("{config:#?}");
            Ok(())
        }
        Command::Room(command) => runtime.block_on(room(&config, command)),
        Command::User(command) => runtime.block_on(user(&config, command)),
        Command::Registrations { json } => runtime.block_on(registrations(&config, json)),
        Command::Calls { room, limit, json } => {
            runtime.block_on(calls(&config, room.as_deref(), limit, json))
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open(config: &Config) -> anyhow::Result<Storage> {
    Ok(Storage::connect(&config.database.url, config.database.max_connections).await?)
}

#[allow(clippy::disallowed_methods)] // the command line
async fn room(config: &Config, command: RoomCommand) -> anyhow::Result<()> {
    let db = open(config).await?;
    match command {
        RoomCommand::Add(add) => {
            let room = Room {
                number: add.number.into(),
                name: add.name,
                pin: add.pin,
                moderator_pin: add.moderator_pin,
                max_participants: add.max_participants,
                dids: add.dids,
                layout: add.layout,
            };
            db.add_room(&room, unix_ms()).await?;
            println!("room {} added", room.number);
        }
        RoomCommand::List { json } => {
            let rooms = db.rooms().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rooms)?);
            } else {
                print!("{}", room_table(&rooms));
            }
        }
        RoomCommand::Remove { number } => {
            if !db.remove_room(&number).await? {
                anyhow::bail!("room {number} not found");
            }
            println!("room {number} removed");
        }
    }
    db.close().await;
    Ok(())
}

#[allow(clippy::disallowed_methods)] // the command line
async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let db = open(config).await?;
    match command {
        UserCommand::Add { name, password, replace } => {
            let user = db.add_user(&name, &password, &config.sip.realm, replace, unix_ms()).await?;
            println!("user {} added (realm {})", user.username, user.realm);
        }
        UserCommand::Import { file, replace } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let accounts = parse_accounts(&text)?;
            let added = db.add_users(&accounts, &config.sip.realm, replace, unix_ms()).await?;
            println!("{} users added (realm {})", added.len(), config.sip.realm);
        }
        UserCommand::List => {
            for user in db.users().await? {
                println!("{}\t{}", user.username, user.realm);
            }
        }
        UserCommand::Remove { name } => {
            if !db.remove_user(&name).await? {
                anyhow::bail!("user {name} not found");
            }
            println!("user {name} removed");
        }
    }
    db.close().await;
    Ok(())
}

/// `name password` per line; blank lines and `#` comments skipped.
fn parse_accounts(text: &str) -> anyhow::Result<Vec<(&str, &str)>> {
    let mut accounts = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [name, password] => accounts.push((name, password)),
            _ => anyhow::bail!("line {}: expected `name password`", number + 1),
        }
    }
    Ok(accounts)
}

#[allow(clippy::disallowed_methods)] // the command line
async fn registrations(config: &Config, json: bool) -> anyhow::Result<()> {
    let db = open(config).await?;
    let now = unix_ms();
    let bindings = db.all_bindings(now).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&bindings)?);
    } else {
        println!("{:<16} {:<40} {:>7} {:<24} USER-AGENT", "USER", "CONTACT", "EXPIRES", "SOURCE");
        for b in bindings {
            println!(
                "{:<16} {:<40} {:>7} {:<24} {}",
                b.username,
                b.contact,
                (b.expires_at_ms - now) / 1000,
                b.source,
                b.user_agent.as_deref().unwrap_or("-")
            );
        }
    }
    db.close().await;
    Ok(())
}

async fn calls(config: &Config, room: Option<&str>, limit: u32, json: bool) -> anyhow::Result<()> {
    let db = open(config).await?;
    let records = db.call_records(room, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        println!("{:<8} {:>8} {:<6} {:<16} {:<32} LEG", "ROOM", "SECONDS", "CODEC", "CAUSE", "FROM");
        for r in records {
            let seconds = match r.ended_at_ms {
                Some(ended) => format!("{:.1}", (ended - r.started_at_ms) as f64 / 1000.0),
                None => "-".into(),
            };
            println!(
                "{:<8} {:>8} {:<6} {:<16} {:<32} {}",
                r.room_number.as_deref().unwrap_or("-"),
                seconds,
                r.codec.as_deref().unwrap_or("-"),
                r.cause,
                r.from_uri,
                r.leg_id
            );
        }
    }
    db.close().await;
    Ok(())
}

fn room_table(rooms: &[Room]) -> String {
    let mut out =
        format!("{:<12} {:<24} {:<8} {:<10} {:<5} {}\n", "NUMBER", "NAME", "PIN", "MOD-PIN", "MAX", "DIDS");
    for r in rooms {
        out += &format!(
            "{:<12} {:<24} {:<8} {:<10} {:<5} {}\n",
            r.number,
            r.name,
            r.pin.as_deref().unwrap_or("-"),
            r.moderator_pin.as_deref().unwrap_or("-"),
            r.max_participants.map_or("-".to_string(), |m| m.to_string()),
            r.dids.join(","),
        );
    }
    out
}
