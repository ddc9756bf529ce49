//! The CLI's commands. Each prints text for people or, with `-o json`, one JSON document.

#[cfg(feature = "cosmos")]
pub mod cosmos_grant;
pub mod deploy;
pub mod keys;
pub mod market;
pub mod sdl;
pub mod settle;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leasemesh_client::NodeClient;
use leasemesh_protocol::Id;
use serde_json::{json, Value};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// What every command gets: the node, the home directory and the output format.
#[derive(Debug)]
pub struct Ctx {
    pub client: NodeClient,
    pub home: PathBuf,
    pub output: Output,
}

impl Ctx {
    pub fn new(node: &str, home: Option<&Path>, output: Output) -> Ctx {
        Ctx { client: NodeClient::new(node), home: leasemesh_client::keys::home_dir(home), output }
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// Prints the result: the JSON document, or the text.
    pub fn emit(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json() {
            println!("{value}");
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{}", t.trim_end());
            }
        }
    }

    /// A progress line (text mode only, on stderr so stdout stays the result).
    pub fn note(&self, line: &str) {
        if !self.json() {
            eprintln!("{line}");
        }
    }

    pub fn error(&self, e: &anyhow::Error) {
        if self.json() {
            println!("{}", json!({ "error": format!("{e:#}") }));
        } else {
            eprintln!("error: {e:#}");
        }
    }
}

/// Parses a hex id given on the command line.
pub fn parse_id(what: &str, s: &str) -> anyhow::Result<Id> {
    Id::from_hex(s.trim())
        .map_err(|e| anyhow::anyhow!("{what} {s:?} is not a 64-character hex id: {e}"))
}

pub type CmdResult = anyhow::Result<ExitCode>;
