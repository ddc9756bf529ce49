//! What the provider asks for an order: a rate table (pure, integer, fast) or an external
//! command (as Akash's bid-price script) with a time limit.
//!
//! Rates are integers in the denom's smallest unit per hour: per 1000 millicores, per GiB of
//! memory, per GiB of ephemeral storage, per GiB of persistent storage (per class), per GPU by
//! model. Each term is rounded up on its own, so the price never undercuts the table.

use std::collections::BTreeMap;
use std::time::Duration;

use leasemesh_protocol::{Coin, Id, Order};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::inventory::Plan;

const GIB: u128 = 1 << 30;

/// Rates for one denom (`[provider.pricing.rates.uakt]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rates {
    /// Per 1000 millicores per hour.
    pub cpu_per_core: u64,
    pub memory_per_gib: u64,
    pub ephemeral_storage_per_gib: u64,
    /// Per GiB per hour, by storage class; classes not listed use `persistent_storage_per_gib`.
    pub persistent_storage_per_gib_by_class: BTreeMap<String, u64>,
    pub persistent_storage_per_gib: u64,
    /// Per GPU per hour, by model; models not listed use `gpu_default` (none: no bid).
    pub gpu_by_model: BTreeMap<String, u64>,
    pub gpu_default: Option<u64>,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            cpu_per_core: 1_000,
            memory_per_gib: 500,
            ephemeral_storage_per_gib: 10,
            persistent_storage_per_gib_by_class: BTreeMap::new(),
            persistent_storage_per_gib: 20,
            gpu_by_model: BTreeMap::new(),
            gpu_default: None,
        }
    }
}

/// The rate table: one [`Rates`] per denom the provider accepts (a TOML table keyed by denom).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RateTable {
    pub rates: BTreeMap<String, Rates>,
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable { rates: [("uakt".to_string(), Rates::default())].into() }
    }
}

/// Why the table gives no price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    #[error("no rates for denom {0}")]
    Denom(String),
    #[error("no rate for GPU model {0} and no default GPU rate")]
    GpuModel(String),
    #[error("the price overflows 128 bits")]
    Overflow,
    #[error("price command: {0}")]
    Command(String),
}

fn ceil_div(n: u128, d: u128) -> u128 {
    n.div_ceil(d)
}

impl RateTable {
    /// The price per hour of the whole order placed as `plan`.
    pub fn price(&self, order: &Order, plan: &Plan) -> Result<Coin, PriceError> {
        let denom = &order.max_price_per_hour.denom;
        let r = self.rates.get(denom).ok_or_else(|| PriceError::Denom(denom.clone()))?;
        let mut total: u128 = 0;
        let add = |t: &mut u128, v: Option<u128>| -> Result<(), PriceError> {
            *t = t.checked_add(v.ok_or(PriceError::Overflow)?).ok_or(PriceError::Overflow)?;
            Ok(())
        };
        for g in &order.groups {
            let n = u128::from(g.count);
            let res = &g.resources;
            let cpu = n * u128::from(res.cpu_millis);
            add(&mut total, cpu.checked_mul(r.cpu_per_core.into()).map(|v| ceil_div(v, 1000)))?;
            let mem = n * u128::from(res.memory_bytes);
            add(&mut total, mem.checked_mul(r.memory_per_gib.into()).map(|v| ceil_div(v, GIB)))?;
            let eph = n * u128::from(res.ephemeral_storage_bytes);
            add(
                &mut total,
                eph.checked_mul(r.ephemeral_storage_per_gib.into()).map(|v| ceil_div(v, GIB)),
            )?;
            for (class, bytes) in res.persistent_by_class() {
                let rate = r
                    .persistent_storage_per_gib_by_class
                    .get(&class)
                    .copied()
                    .unwrap_or(r.persistent_storage_per_gib);
                let b = n * u128::from(bytes);
                add(&mut total, b.checked_mul(rate.into()).map(|v| ceil_div(v, GIB)))?;
            }
        }
        for s in &plan.slots {
            let Some(model) = &s.gpu_model else { continue };
            let rate = r
                .gpu_by_model
                .get(model)
                .copied()
                .or(r.gpu_default)
                .ok_or_else(|| PriceError::GpuModel(model.clone()))?;
            let units: u128 = s.replica_gpus.iter().map(|g| g.len() as u128).sum();
            add(&mut total, units.checked_mul(rate.into()))?;
        }
        Ok(Coin::new(denom.clone(), total))
    }
}

/// An external pricing command (`[provider.pricing.command]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceCommand {
    /// Program and arguments; empty means "use the rate table".
    pub argv: Vec<String>,
    /// The command must answer within this time, or no bid is made.
    pub timeout_ms: u64,
}

impl Default for PriceCommand {
    fn default() -> Self {
        PriceCommand { argv: Vec::new(), timeout_ms: 500 }
    }
}

/// What the command reads on stdin: the order's resources and where they would run.
#[derive(Debug, Clone, Serialize)]
pub struct PriceRequest<'a> {
    pub order_id: String,
    pub denom: &'a str,
    /// Decimal string (a u128 does not survive JSON numbers).
    pub max_price_per_hour: String,
    pub groups: Vec<PriceRequestGroup<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PriceRequestGroup<'a> {
    pub name: &'a str,
    pub count: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Per class, bytes per replica.
    pub persistent_storage: Vec<(String, u64)>,
    pub gpu_units: u32,
    /// Models chosen by placement for this group's replicas.
    pub gpu_models: Vec<String>,
}

impl PriceCommand {
    pub fn is_set(&self) -> bool {
        !self.argv.is_empty()
    }

    /// The JSON the command reads.
    pub fn request<'a>(order_id: &Id, order: &'a Order, plan: &Plan) -> PriceRequest<'a> {
        PriceRequest {
            order_id: order_id.to_hex(),
            denom: &order.max_price_per_hour.denom,
            max_price_per_hour: order.max_price_per_hour.amount.to_string(),
            groups: order
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let mut gpu_models: Vec<String> = plan
                        .slots
                        .iter()
                        .filter(|s| s.group as usize == i)
                        .filter_map(|s| s.gpu_model.clone())
                        .collect();
                    gpu_models.sort();
                    gpu_models.dedup();
                    PriceRequestGroup {
                        name: &g.name,
                        count: g.count,
                        cpu_millis: g.resources.cpu_millis,
                        memory_bytes: g.resources.memory_bytes,
                        ephemeral_storage_bytes: g.resources.ephemeral_storage_bytes,
                        persistent_storage: g.resources.persistent_by_class(),
                        gpu_units: g.resources.gpu.as_ref().map_or(0, |x| x.units),
                        gpu_models,
                    }
                })
                .collect(),
        }
    }

    /// Runs the command: request JSON on stdin, an integer price (smallest unit per hour) on
    /// stdout. Killed when the time limit passes. Any failure is an error: no bid.
    pub async fn price(
        &self,
        order_id: &Id,
        order: &Order,
        plan: &Plan,
    ) -> Result<Coin, PriceError> {
        let (program, args) =
            self.argv.split_first().ok_or_else(|| PriceError::Command("no command set".into()))?;
        let input = serde_json::to_vec(&Self::request(order_id, order, plan))
            .map_err(|e| PriceError::Command(e.to_string()))?;
        let run = async {
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| PriceError::Command(format!("cannot start {program}: {e}")))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that exits without reading its input is not an error by itself.
                let _ = stdin.write_all(&input).await;
                drop(stdin);
            }
            child.wait_with_output().await.map_err(|e| PriceError::Command(e.to_string()))
        };
        let out =
            tokio::time::timeout(Duration::from_millis(self.timeout_ms), run).await.map_err(
                |_| PriceError::Command(format!("no answer within {} ms", self.timeout_ms)),
            )??;
        if !out.status.success() {
            return Err(PriceError::Command(format!("exited with {}", out.status)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let amount: u128 = text.trim().parse().map_err(|_| {
            PriceError::Command(format!(
                "stdout {:?} is not an integer amount",
                text.chars().take(40).collect::<String>()
            ))
        })?;
        Ok(Coin::new(order.max_price_per_hour.denom.clone(), amount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::inventory::Slot;
    use leasemesh_protocol::samples;

    fn sample_plan() -> Plan {
        // The sample order: 2 web replicas (no GPU), 1 worker with 1 GPU.
        Plan {
            slots: vec![
                Slot {
                    group: 0,
                    host: "h".into(),
                    replica_gpus: vec![vec![], vec![]],
                    gpu_model: None,
                },
                Slot {
                    group: 1,
                    host: "h".into(),
                    replica_gpus: vec![vec!["0".into()]],
                    gpu_model: Some("a100".into()),
                },
            ],
        }
    }

    #[test]
    fn table_price_adds_every_resource() {
        let mut rates = Rates {
            cpu_per_core: 1_000,
            memory_per_gib: 100,
            ephemeral_storage_per_gib: 1,
            persistent_storage_per_gib: 2,
            ..Rates::default()
        };
        rates.gpu_by_model.insert("a100".into(), 200_000);
        let table = RateTable { rates: [("uakt".to_string(), rates)].into() };
        let p = table.price(&samples::order(), &sample_plan()).unwrap();
        // cpu: 2×500 + 4000 = 5000 m → 5000; mem: 2×0.5 + 16 = 17 GiB → 1700;
        // ephemeral: 2×1 + 50 = 52 GiB → 52; persistent: 100 GiB → 200; gpu: 200000.
        assert_eq!(p, Coin::new("uakt", 5_000 + 1_700 + 52 + 200 + 200_000));
    }

    #[test]
    fn unpriced_gpu_model_and_denom_give_no_price() {
        let table = RateTable::default();
        assert_eq!(
            table.price(&samples::order(), &sample_plan()),
            Err(PriceError::GpuModel("a100".into()))
        );
        let mut o = samples::order();
        o.max_price_per_hour.denom = "inj".into();
        assert_eq!(table.price(&o, &sample_plan()), Err(PriceError::Denom("inj".into())));
    }

    #[test]
    fn partial_units_round_up() {
        let mut o = samples::order();
        o.groups.truncate(1);
        o.groups[0].count = 1;
        o.groups[0].resources.cpu_millis = 1; // a thousandth of a core
        o.groups[0].resources.memory_bytes = 1;
        o.groups[0].resources.ephemeral_storage_bytes = 1;
        let plan = Plan::default();
        let p = RateTable::default().price(&o, &plan).unwrap();
        assert_eq!(p.amount, 3, "each term rounds up to one unit");
    }

    fn sh(script: &str, timeout_ms: u64) -> PriceCommand {
        PriceCommand { argv: vec!["sh".into(), "-c".into(), script.into()], timeout_ms }
    }

    #[tokio::test]
    async fn command_reads_json_and_answers_a_price() {
        let o = samples::order();
        let id = Id::domain("o", &[b"1"]);
        // The script checks it got the order's denom and a GPU model on stdin.
        let cmd = sh("grep -q '\"gpu_models\":\\[\"a100\"\\]' && echo 12345", 5_000);
        assert_eq!(cmd.price(&id, &o, &sample_plan()).await, Ok(Coin::new("uakt", 12_345)));
    }

    #[tokio::test]
    async fn command_failures_mean_no_price() {
        let o = samples::order();
        let id = Id::domain("o", &[b"1"]);
        for (script, what) in [
            ("exit 3", "exited"),
            ("echo 'twelve'", "not an integer"),
            ("sleep 5; echo 1", "no answer within"),
        ] {
            match sh(script, 300).price(&id, &o, &sample_plan()).await {
                Err(PriceError::Command(m)) => assert!(m.contains(what), "{script}: {m}"),
                r => panic!("{script}: expected a command error, got {r:?}"),
            }
        }
        let missing = PriceCommand { argv: vec!["/nonexistent/price".into()], timeout_ms: 300 };
        assert!(missing.price(&id, &o, &sample_plan()).await.is_err());
    }
}
