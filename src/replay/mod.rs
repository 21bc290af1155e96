//! `sgw replay`: drives the engine from a packet capture. TODO: capture layer being merged.

use crate::cli::ReplayArgs;

pub fn run(_args: &ReplayArgs) -> anyhow::Result<u8> {
    anyhow::bail!("replay is not built yet")
}
