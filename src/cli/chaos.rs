//! `zkmq chaos ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ChaosCommand {
    /// Not built yet
    Todo,
}

pub async fn run(command: ChaosCommand) -> anyhow::Result<u8> {
    match command {
        ChaosCommand::Todo => anyhow::bail!("zkmq chaos is not built yet"),
    }
}
