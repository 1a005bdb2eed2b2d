//! `zkmq bench ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Not built yet
    Todo,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<u8> {
    match command {
        BenchCommand::Todo => anyhow::bail!("zkmq bench is not built yet"),
    }
}
