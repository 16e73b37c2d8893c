//! `kubectl-flashrollup`: the kubectl plugin (`kubectl flashrollup ...`); parse the command line
//! and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    flashlayer_operator::plugin::main(flashlayer_operator::plugin::Cli::parse())
}
