use clap::Parser;
use warp_edge::cli::Cli;

fn main() {
    let _cli = Cli::parse();
}
