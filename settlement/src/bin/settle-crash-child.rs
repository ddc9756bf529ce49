//! The child process of the settlement crash test (`tests/crash.rs`): settles the sample batch
//! through a journal and a `LocalLedger` in `<dir>`, and aborts the process right after the
//! named step, as a power cut or `kill -9` would.
//!
//! ```text
//! settle-crash-child <dir> settle <step>   # step: stored|prepared|submitted|confirmed|anchored|none
//! settle-crash-child <dir> resume <step>
//! ```
//! Prints the anchors when it gets to the end.

use std::path::PathBuf;

use leasemesh_settlement::journal::{Journal, RetryPolicy, SettleStep};
use leasemesh_settlement::ledger::LocalLedger;
use leasemesh_settlement::samples;

type Error = Box<dyn std::error::Error>;

/// The ledger address that spends the tenants' grants; the test grants to it.
const SETTLER: &str = "settler";

fn parse_step(s: &str) -> Result<Option<SettleStep>, Error> {
    Ok(Some(match s {
        "stored" => SettleStep::BatchStored,
        "prepared" => SettleStep::Prepared,
        "submitted" => SettleStep::Submitted,
        "confirmed" => SettleStep::Confirmed,
        "anchored" => SettleStep::Anchored,
        "none" => return Ok(None),
        other => return Err(format!("unknown step {other:?}").into()),
    }))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, mode, step] = args.as_slice() else {
        return Err("usage: settle-crash-child <dir> settle|resume <step>".into());
    };
    let dir = PathBuf::from(dir);
    let crash_at = parse_step(step)?;
    let mut journal = Journal::open(dir.join("journal"))?;
    let mut ledger = LocalLedger::open(dir.join("ledger"), SETTLER)?;
    journal.set_retry_policy(RetryPolicy {
        first_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(10),
        max_waits: 20,
        resubmit_every: 2,
    });
    journal.set_step_hook(Box::new(move |s| {
        if Some(s) == crash_at {
            eprintln!("crash-child: aborting after {s:?}");
            std::process::abort();
        }
    }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let anchors = rt.block_on(async {
        match mode.as_str() {
            "settle" => {
                let batch = samples::crash_test_fleet().signed_batch()?;
                Ok::<_, Error>(vec![journal.settle(&mut ledger, batch).await?])
            }
            "resume" => Ok(journal.resume(&mut ledger).await?),
            other => Err(format!("unknown mode {other:?}").into()),
        }
    })?;
    for a in anchors {
        println!("anchored {} at height {} in {}", a.chain_id, a.height, a.tx_hashes.join(","));
    }
    Ok(())
}
