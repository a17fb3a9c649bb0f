fn main() -> anyhow::Result<()> {
    ucan_gateway::cli::run()
}
