//! Command line of `flashlayer-operator`: `run` (the controller) and `crd` (print the CRDs).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes operator for ephemeral (flash) rollups.
#[derive(Debug, Parser)]
#[command(name = "flashlayer-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

/// Run a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::crdgen::all_yaml());
            ExitCode::SUCCESS
        }
    }
}
