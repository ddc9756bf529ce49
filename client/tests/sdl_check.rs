//! Runs the real `leasemesh` binary: `sdl check` on corpus files, JSON and text output, exit codes.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn corpus(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/akash-sdl").join(file);
    assert!(
        p.exists(),
        "corpus file {} is missing (CI clones shared/ beside the repo)",
        p.display()
    );
    p
}

fn leasemesh(args: &[&str], files: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasemesh"));
    cmd.args(args);
    for f in files {
        cmd.arg(corpus(f));
    }
    // No node is needed: keep the test independent of any LEASEMESH_NODE in the environment.
    cmd.env_remove("LEASEMESH_NODE").output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn json_mode_prints_one_line_per_file_and_fails_if_any_file_fails() {
    let files = [
        "DeepSeek-R1-0528__deploy.yaml",
        "matomo__deploy.yaml",
        "Llama-3.1-405B-BF16__deploy.yaml",
        "uptime-kuma__deploy.yaml",
    ];
    let out = leasemesh(&["sdl", "check", "-o", "json"], &files);
    assert!(!out.status.success(), "matomo is broken: the exit code must say so");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);

    let first = &lines[0];
    assert!(first["file"].as_str().unwrap().ends_with("DeepSeek-R1-0528__deploy.yaml"));
    assert_eq!(first["ok"], true);
    assert_eq!(
        (first["orders"].as_u64(), first["services"].as_u64(), first["gpus"].as_u64()),
        (Some(1), Some(1), Some(8))
    );

    let broken = &lines[1];
    assert_eq!(broken["ok"], false);
    let error = broken["error"].as_str().unwrap();
    assert!(
        error.contains("services.db.expose[0].to[0]")
            && error.contains("line 16")
            && error.contains("servcie"),
        "{error}"
    );
    assert!(broken.get("orders").is_none());

    // Three services with 8 GPUs each.
    assert_eq!(
        (lines[2]["ok"].as_bool(), lines[2]["services"].as_u64(), lines[2]["gpus"].as_u64()),
        (Some(true), Some(3), Some(24))
    );

    // Lower-case units are accepted with a warning that names the line.
    let warnings = lines[3]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("(line 24)")
                && w.as_str().unwrap().contains("512Mb")),
        "{warnings:?}"
    );

    // Keys in the documented order.
    let raw = String::from_utf8(out.stdout).unwrap();
    assert!(raw.lines().next().unwrap().starts_with(r#"{"file":"#), "{raw}");
    assert!(raw.lines().nth(1).unwrap().contains(r#","ok":false,"error":"#), "{raw}");
}

#[test]
fn all_good_files_exit_zero_and_text_mode_prints_a_table() {
    let out =
        leasemesh(&["sdl", "check"], &["DeepSeek-R1-0528__deploy.yaml", "ollama-gpu__deploy.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("FILE"), "{text}");
    assert!(text.contains("ORDERS") && text.contains("GPUS"), "{text}");
    // amount 1000000 uact per block × 600 blocks per hour
    assert!(text.contains("max price dcloud: 600000000uact/h"), "{text}");
    assert!(text.trim_end().ends_with("2 file(s): 2 ok, 0 failed"), "{text}");
}

#[test]
fn block_time_changes_the_hourly_price() {
    let out =
        leasemesh(&["sdl", "check", "--block-time-ms", "3000"], &["DeepSeek-R1-0528__deploy.yaml"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("max price dcloud: 1200000000uact/h"), "{text}");
    let out =
        leasemesh(&["sdl", "check", "--block-time-ms", "0"], &["DeepSeek-R1-0528__deploy.yaml"]);
    assert!(!out.status.success());
}

#[test]
fn help_explains_the_block_price_conversion() {
    let out = Command::new(env!("CARGO_BIN_EXE_leasemesh"))
        .args(["sdl", "check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("6 s") && help.contains("600"), "{help}");
}

#[test]
fn a_missing_file_is_a_failed_line_not_a_crash() {
    let out = Command::new(env!("CARGO_BIN_EXE_leasemesh"))
        .args(["sdl", "check", "-o", "json", "/nonexistent/deploy.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines[0]["ok"], false);
    assert!(lines[0]["error"].as_str().unwrap().contains("cannot read"));
}
