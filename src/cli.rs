//! The command line. Subcommands arrive with the features that need them.

use clap::Parser;

/// SIP edge proxy for the WARP wholesale trunking platform.
#[derive(Debug, Parser)]
#[command(name = "warp-edge", version, about, long_about = None)]
pub struct Cli {}
