//! `zkmq rest ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum RestCommand {
    /// Not built yet
    Todo,
}

pub async fn run(command: RestCommand) -> anyhow::Result<u8> {
    match command {
        RestCommand::Todo => anyhow::bail!("zkmq rest is not built yet"),
    }
}
