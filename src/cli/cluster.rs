//! `zkmq cluster ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Not built yet
    Todo,
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<u8> {
    match command {
        ClusterCommand::Todo => anyhow::bail!("zkmq cluster is not built yet"),
    }
}
