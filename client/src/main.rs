//! `leasemesh`: the tenant's command line. HTTP to any node; the key stays on this machine.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::Output;

#[derive(Debug, Parser)]
#[command(
    name = "leasemesh",
    version,
    about = "The leasemesh tenant client: deploy Akash SDL files on the mesh"
)]
struct Cli {
    /// The node to talk to.
    #[arg(long, global = true, env = "LEASEMESH_NODE", default_value = leasemesh_client::DEFAULT_NODE_URL)]
    node: String,
    /// The client's home directory (key file); default $LEASEMESH_HOME or ~/.leasemesh.
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The tenant key: `keys new` creates one (mode 0600), `keys show` prints the public key.
    Keys {
        #[command(subcommand)]
        command: cmd::keys::KeysCmd,
    },
    /// Deploys an SDL file: orders, bids, award, sealed manifest, Running.
    Deploy(cmd::deploy::DeployArgs),
    /// Orders the node knows (open auctions; --all for every one).
    Orders {
        #[arg(long)]
        all: bool,
    },
    /// Bids on one order.
    Bids { order: String },
    /// Providers and their free capacity.
    Providers,
    /// Leases the node knows.
    Leases,
    /// One lease: status, logs, close.
    Lease {
        #[command(subcommand)]
        command: cmd::market::LeaseCmd,
    },
    /// Grants the settler a spend limit on the settlement backend in use.
    Grant(cmd::settle::GrantArgs),
    /// Verifies a lease's settlement proof locally: Merkle proof, batch signature, anchor (a
    /// chain anchor on the chain itself).
    VerifyLease(cmd::settle::VerifyArgs),
    /// Akash SDL files offline: `sdl check FILE...` (per-block prices ×600 per hour at 6 s blocks).
    Sdl {
        #[command(subcommand)]
        command: cmd::sdl::SdlCmd,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ctx = cmd::Ctx::new(&cli.node, cli.home.as_deref(), cli.output);
    let res = match cli.command {
        Cmd::Keys { command } => cmd::keys::run(&ctx, command),
        Cmd::Deploy(args) => cmd::deploy::run(&ctx, args),
        Cmd::Orders { all } => cmd::market::orders(&ctx, all),
        Cmd::Bids { order } => cmd::market::bids(&ctx, &order),
        Cmd::Providers => cmd::market::providers(&ctx),
        Cmd::Leases => cmd::market::leases(&ctx),
        Cmd::Lease { command } => cmd::market::lease(&ctx, command),
        Cmd::Grant(args) => cmd::settle::grant(&ctx, args),
        Cmd::VerifyLease(args) => cmd::settle::verify_lease(&ctx, args),
        Cmd::Sdl { command } => cmd::sdl::run(&ctx, command),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            ctx.error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
