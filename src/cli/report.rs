//! `zkmq report ...`

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A saved run directory
    pub run: std::path::PathBuf,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<u8> {
    anyhow::bail!("zkmq report {} is not built yet", args.run.display())
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A run directory or its history.jsonl
    pub run: std::path::PathBuf,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::bail!("zkmq check {} is not built yet", args.run.display())
}
