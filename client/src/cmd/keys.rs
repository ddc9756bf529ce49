//! `leasemesh keys new|show`.

use std::process::ExitCode;

use clap::Subcommand;
use leasemesh_client::keys;
use serde_json::json;

use super::{CmdResult, Ctx};

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Creates a new ed25519 key in the home directory (mode 0600); never overwrites one.
    New,
    /// Prints the public key and the default payment address.
    Show,
}

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> CmdResult {
    let (key, created) = match cmd {
        KeysCmd::New => (keys::create(&ctx.home)?, true),
        KeysCmd::Show => (keys::load(&ctx.home)?, false),
    };
    let public = key.public();
    let path = ctx.home.join(keys::KEY_FILE);
    let address = keys::default_address(&public);
    ctx.emit(
        &json!({ "public_key": public.to_hex(), "address": address, "key_file": path, "created": created }),
        || {
            format!(
                "{}public key  {}\naddress     {}\nkey file    {}",
                if created { "created a new key\n" } else { "" },
                public.to_hex(),
                address,
                path.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}
