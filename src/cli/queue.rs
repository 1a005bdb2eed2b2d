//! `zkmq queue ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Not built yet
    Todo,
}

pub async fn run(command: QueueCommand) -> anyhow::Result<u8> {
    match command {
        QueueCommand::Todo => anyhow::bail!("zkmq queue is not built yet"),
    }
}
