//! `leasemesh sdl check FILE...`: reads Akash SDL files as leasemesh would deploy them and says
//! for each whether it converts (orders, services, GPUs, warnings) or why not (key path, line).
//! Offline: no node, no key.

use std::path::PathBuf;
use std::process::ExitCode;

use leasemesh_protocol::sdl::{self, OrderParams, SdlError, SdlWarning, DEFAULT_BLOCK_TIME_MS};
use leasemesh_protocol::{Hash, Keypair};
use serde::Serialize;

use super::{CmdResult, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum SdlCmd {
    /// Checks Akash SDL files (deploy.yaml): each converts to orders and a manifest, or the error
    /// names the key path and line. Prices in SDL are per replica per block: with the default
    /// 6 s block time an hour has 600 blocks, so the order's max price per hour is
    /// count × amount × 600. Exits non-zero if any file fails. `-o json` prints one line per file.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// SDL files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Block time in ms used to turn per-block SDL prices into per-hour prices
    /// (6000 = Akash's 6 s blocks: 600 blocks per hour, prices ×600).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BLOCK_TIME_MS)]
    pub block_time_ms: u64,
}

/// What one file gave.
#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    pub outcome: Result<Converted, String>,
}

#[derive(Debug)]
pub struct Converted {
    pub orders: usize,
    pub services: usize,
    pub gpus: u64,
    /// One line per order: placement and max price per hour.
    pub prices: Vec<String>,
    pub warnings: Vec<SdlWarning>,
}

/// Reads and converts one file. The orders are built with a throwaway key: only the
/// conversion is checked, nothing is signed or sent.
pub fn check_file(path: &std::path::Path, block_time_ms: u64) -> FileReport {
    let file = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return FileReport { file, outcome: Err("the file is not UTF-8 text".into()) }
            }
        },
        Err(e) => return FileReport { file, outcome: Err(format!("cannot read the file: {e}")) },
    };
    // A fixed stand-in tenant: the check only converts, nothing is signed or sent. The same
    // derivation as `Keypair::from_seed_label` (test-only), so the report is unchanged.
    let tenant = Keypair::from_secret(
        *Hash::domain("leasemesh/test-key", &[b"leasemesh-sdl-check".as_slice()]).as_bytes(),
    );
    let mut params = OrderParams::new(tenant.public(), "sdl-check");
    params.block_time_ms = block_time_ms;
    let converted = sdl::parse(&text).and_then(|parsed| {
        let d = sdl::to_orders(&parsed, &params)?;
        Ok::<_, SdlError>(Converted {
            orders: d.orders.len(),
            services: d.manifest.groups.iter().map(|g| g.services.len()).sum(),
            gpus: d.gpus(),
            prices: d
                .orders
                .iter()
                .map(|o| format!("{}: {}/h", o.placement.name, o.max_price_per_hour))
                .collect(),
            warnings: parsed.warnings,
        })
    });
    FileReport { file, outcome: converted.map_err(|e| e.to_string()) }
}

/// One JSON line, keys in the documented order.
#[derive(Debug, Serialize)]
struct JsonLine<'a> {
    file: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpus: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

impl FileReport {
    /// `{"file":..,"ok":true,"orders":..,"services":..,"gpus":..,"warnings":[..]}` or
    /// `{"file":..,"ok":false,"error":..}`.
    pub fn to_json(&self) -> String {
        let line = match &self.outcome {
            Ok(c) => JsonLine {
                file: &self.file,
                ok: true,
                orders: Some(c.orders),
                services: Some(c.services),
                gpus: Some(c.gpus),
                error: None,
                warnings: Some(c.warnings.iter().map(ToString::to_string).collect()),
            },
            Err(e) => JsonLine {
                file: &self.file,
                ok: false,
                orders: None,
                services: None,
                gpus: None,
                error: Some(e),
                warnings: None,
            },
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// The human table: one row per file, then warnings and errors under it.
pub fn table(reports: &[FileReport]) -> String {
    let width = reports.iter().map(|r| r.file.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:width$}  {:4}  {:>6}  {:>8}  {:>4}  {:>8}\n",
        "FILE", "OK", "ORDERS", "SERVICES", "GPUS", "WARNINGS"
    );
    for r in reports {
        match &r.outcome {
            Ok(c) => {
                out += &format!(
                    "{:width$}  {:4}  {:>6}  {:>8}  {:>4}  {:>8}\n",
                    r.file,
                    "ok",
                    c.orders,
                    c.services,
                    c.gpus,
                    c.warnings.len()
                );
                for p in &c.prices {
                    out += &format!("    max price {p}\n");
                }
                for w in &c.warnings {
                    out += &format!("    warning: {w}\n");
                }
            }
            Err(e) => {
                out += &format!(
                    "{:width$}  {:4}  {:>6}  {:>8}  {:>4}  {:>8}\n",
                    r.file, "FAIL", "-", "-", "-", "-"
                );
                out += &format!("    error: {e}\n");
            }
        }
    }
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    out += &format!("{} file(s): {} ok, {failed} failed\n", reports.len(), reports.len() - failed);
    out
}

pub fn run(ctx: &Ctx, cmd: SdlCmd) -> CmdResult {
    let SdlCmd::Check(args) = cmd;
    if args.block_time_ms == 0 {
        anyhow::bail!("--block-time-ms must be more than 0");
    }
    let reports: Vec<FileReport> =
        args.files.iter().map(|f| check_file(f, args.block_time_ms)).collect();
    if ctx.json() {
        for r in &reports {
            println!("{}", r.to_json());
        }
    } else {
        print!("{}", table(&reports));
    }
    Ok(if reports.iter().all(|r| r.outcome.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_each_file_and_the_error() {
        let reports = vec![
            FileReport {
                file: "a.yaml".into(),
                outcome: Ok(Converted {
                    orders: 1,
                    services: 2,
                    gpus: 3,
                    prices: vec!["dcloud: 600uakt/h".into()],
                    warnings: vec![],
                }),
            },
            FileReport { file: "b.yaml".into(), outcome: Err("services (line 1): missing".into()) },
        ];
        let t = table(&reports);
        assert!(t.contains("a.yaml  ok         1         2     3         0"), "{t}");
        assert!(t.contains("b.yaml  FAIL"), "{t}");
        assert!(t.contains("error: services (line 1): missing"), "{t}");
        assert!(t.ends_with("2 file(s): 1 ok, 1 failed\n"), "{t}");
        assert_eq!(
            reports[1].to_json(),
            r#"{"file":"b.yaml","ok":false,"error":"services (line 1): missing"}"#
        );
        assert_eq!(
            reports[0].to_json(),
            r#"{"file":"a.yaml","ok":true,"orders":1,"services":2,"gpus":3,"warnings":[]}"#
        );
    }
}
