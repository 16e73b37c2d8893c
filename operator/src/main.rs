//! `flashlayer-operator`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    flashlayer_operator::cli::main(flashlayer_operator::cli::Cli::parse())
}
