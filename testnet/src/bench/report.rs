//! Figures from the raw records, the JSON line, `report.md` and the SVG plots.
//!
//! The plots are small hand-written SVG (polylines on a frame with ticks): four fixed charts
//! need no plotting library, and this adds no dependency.

use std::fmt::Write as _;
use std::path::Path;

use super::akash::AkashFigures;
use super::load::{MeshFigures, SettleFigures};
use super::{procfs, BenchArgs, BenchLine};

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn quantile_f(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Time after posting until `share` of `nodes` nodes held the order (`None`: never).
pub fn coverage_ms(posted: u64, held: &[u64], nodes: usize, share: f64) -> Option<u64> {
    let need = ((share * nodes as f64).ceil() as usize).max(1);
    let mut t: Vec<u64> = held.iter().map(|h| h.saturating_sub(posted)).collect();
    t.sort_unstable();
    t.get(need - 1).copied()
}

/// Per-order latencies measured at the tenant's node.
#[derive(Debug, Default)]
pub struct Latencies {
    pub first_bid: Vec<u64>,
    pub award: Vec<u64>,
    /// Per share (50, 90, 99, 100 %): per-order coverage times.
    pub coverage: [Vec<u64>; 4],
    /// Every (order, node) holding delay, for the coverage plot.
    pub holdings: Vec<u64>,
}

pub const SHARES: [f64; 4] = [0.5, 0.9, 0.99, 1.0];

pub fn latencies(m: &MeshFigures) -> Latencies {
    let mut l = Latencies::default();
    for (id, (posted, k)) in &m.rec.posted {
        let node = m.tenant_nodes[*k];
        if let Some(b) = m.rec.first_bid.get(&(node, *id)) {
            l.first_bid.push(b.saturating_sub(*posted));
        }
        if let Some(a) = m.rec.award.get(&(node, *id)) {
            l.award.push(a.saturating_sub(*posted));
        }
        let held = m.rec.held.get(id).map(Vec::as_slice).unwrap_or_default();
        for (i, share) in SHARES.iter().enumerate() {
            if let Some(c) = coverage_ms(*posted, held, m.nodes, *share) {
                l.coverage[i].push(c);
            }
        }
        l.holdings.extend(held.iter().map(|h| h.saturating_sub(*posted)));
    }
    l.first_bid.sort_unstable();
    l.award.sort_unstable();
    l.holdings.sort_unstable();
    for c in &mut l.coverage {
        c.sort_unstable();
    }
    l
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    }
}

/// Builds the line, writes the report, returns the line.
pub fn finish(
    args: &BenchArgs,
    m: &MeshFigures,
    settle: Option<SettleFigures>,
    akash: Option<&AkashFigures>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<BenchLine> {
    let l = latencies(m);
    let mut rss: Vec<f64> = m.rss.iter().map(|s| s.3).collect();
    rss.extend(m.rss_end_mb.iter().copied());
    rss.sort_by(f64::total_cmp);
    let mut rss_end = m.rss_end_mb.clone();
    rss_end.sort_by(f64::total_cmp);
    let mut cpu = m.cpu_pct.clone();
    cpu.sort_by(f64::total_cmp);
    let orders = m.rec.posted.len();
    let mut bytes: Vec<u64> = m.bytes_sent.iter().map(|b| b / orders.max(1) as u64).collect();
    bytes.sort_unstable();
    let leases = l.award.len();
    let mut ak: Vec<u64> = akash.map(|a| a.order_to_lease_ms.clone()).unwrap_or_default();
    ak.sort_unstable();
    let per_lease = |v: u64, n: usize| (n > 0).then(|| v as f64 / n as f64);
    let txs_per_lease = settle.and_then(|s| per_lease(s.txs, leases));
    let gas_per_lease = settle.and_then(|s| per_lease(s.gas, leases));
    let akash_txs = akash.and_then(|a| per_lease(a.txs, a.leases()));
    let akash_gas = akash.and_then(|a| per_lease(a.gas, a.leases()));
    let p50_award = quantile(&l.award, 0.5);
    let akash_p50 = quantile(&ak, 0.5);
    let line = BenchLine {
        nodes: m.nodes,
        providers: args.providers,
        tenants: args.tenants,
        orders,
        orders_per_s: args.orders_per_s,
        duration_s: args.duration_s,
        runtime: "none",
        chain: format!("{:?}", args.chain).to_lowercase(),
        block_time_ms: args.block_time_ms,
        awarded: leases,
        p50_order_to_first_bid_ms: quantile(&l.first_bid, 0.5),
        p99_order_to_first_bid_ms: quantile(&l.first_bid, 0.99),
        p50_order_to_award_ms: p50_award,
        p99_order_to_award_ms: quantile(&l.award, 0.99),
        coverage_p50_ms: quantile(&l.coverage[0], 0.5),
        coverage_p90_ms: quantile(&l.coverage[1], 0.5),
        coverage_p99_ms: quantile(&l.coverage[2], 0.5),
        coverage_p100_ms: quantile(&l.coverage[3], 0.5),
        coverage_p99_ms_worst_orders: quantile(&l.coverage[2], 0.99),
        rss_mb_median: (quantile_f(&rss_end, 0.5) * 10.0).round() / 10.0,
        rss_mb_max: (rss.last().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        cpu_pct_median: (quantile_f(&cpu, 0.5) * 10.0).round() / 10.0,
        cpu_pct_max: (cpu.last().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        bytes_sent_per_node_per_order: quantile(&bytes, 0.5),
        leases,
        settle_txs: settle.map(|s| s.txs),
        settle_gas: settle.map(|s| s.gas),
        txs_per_lease: txs_per_lease.map(|v| (v * 1e4).round() / 1e4),
        gas_per_lease: gas_per_lease.map(f64::round),
        akash_leases: akash.map(AkashFigures::leases),
        akash_p50_order_to_lease_ms: akash_p50,
        akash_p99_order_to_lease_ms: quantile(&ak, 0.99),
        akash_txs_per_lease: akash_txs,
        akash_gas_per_lease: akash_gas.map(f64::round),
        speedup_p50: ratio(akash_p50.map(|v| v as f64), p50_award.map(|v| v as f64)),
        gas_ratio: ratio(akash_gas, gas_per_lease),
        loadavg_1m: procfs::loadavg_1m(),
        report: args.report.display().to_string(),
    };
    write_report(&args.report, args, &line, m, &l, akash, &ak, &bytes)?;
    progress(&format!("report in {}", args.report.display()));
    Ok(line)
}

/// One data series of a plot.
#[derive(Debug)]
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

/// A line plot as SVG: a frame, 5 ticks per axis, one polyline per series, a legend.
pub fn svg_plot(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let all = series.iter().flat_map(|s| s.points.iter());
    let (xmax, ymax) = all.fold((0.0f64, 0.0f64), |(a, b), (x, y)| (a.max(*x), b.max(*y)));
    let (xmax, ymax) = (nice_max(xmax), nice_max(ymax));
    let px = |x: f64| left + x / xmax * (w - left - right);
    let py = |y: f64| h - bottom - y / ymax * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        w - left - right,
        h - top - bottom
    );
    for i in 0..=5 {
        let (xv, yv) = (xmax * i as f64 / 5.0, ymax * i as f64 / 5.0);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            px(xv),
            h - bottom + 16.0,
            fmt_num(xv),
            left - 6.0,
            py(yv) + 4.0,
            fmt_num(yv)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (left + w - right) / 2.0,
        h - 12.0,
        esc(x_label),
        (top + h - bottom) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let pts: Vec<String> =
            se.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            se.color,
            pts.join(" "),
            left + 10.0,
            top + 16.0 + 16.0 * i as f64,
            se.color,
            esc(se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// CDF points of sorted values: (value, fraction ≤ value), at most ~400 points.
pub fn cdf(sorted: &[u64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let step = (n / 400).max(1);
    let mut out: Vec<(f64, f64)> =
        (0..n).step_by(step).map(|i| (sorted[i] as f64, (i + 1) as f64 / n as f64)).collect();
    if let Some(last) = sorted.last() {
        out.push((*last as f64, 1.0));
    }
    out
}

fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    dir: &Path,
    args: &BenchArgs,
    line: &BenchLine,
    m: &MeshFigures,
    l: &Latencies,
    akash: Option<&AkashFigures>,
    ak: &[u64],
    bytes: &[u64],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut series =
        vec![Series { name: "leasemesh order → award", color: "#1f77b4", points: cdf(&l.award) }];
    series.push(Series {
        name: "leasemesh order → first bid",
        color: "#2ca02c",
        points: cdf(&l.first_bid),
    });
    if !ak.is_empty() {
        series.push(Series {
            name: "Akash-style order → lease",
            color: "#d62728",
            points: cdf(ak),
        });
    }
    std::fs::write(
        dir.join("latency_cdf.svg"),
        svg_plot("Latency CDF", "ms", "fraction of orders", &series),
    )?;
    let holdings = cdf(&l.holdings);
    std::fs::write(
        dir.join("coverage.svg"),
        svg_plot(
            "Gossip coverage: share of (order, node) pairs held",
            "ms after posting",
            "share of nodes holding",
            &[Series { name: "all orders", color: "#1f77b4", points: holdings }],
        ),
    )?;
    let rss_med = m.rss.iter().map(|s| (s.1 as f64, s.2)).collect();
    let rss_max = m.rss.iter().map(|s| (s.1 as f64, s.3)).collect();
    std::fs::write(
        dir.join("rss.svg"),
        svg_plot(
            "Node RSS against orders held",
            "orders in the tenant node's store",
            "RSS MB",
            &[
                Series { name: "median node", color: "#1f77b4", points: rss_med },
                Series { name: "largest node", color: "#d62728", points: rss_max },
            ],
        ),
    )?;
    std::fs::write(dir.join("report.md"), report_md(args, line, m, akash, bytes))?;
    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(line)?)?;
    Ok(())
}

fn report_md(
    args: &BenchArgs,
    line: &BenchLine,
    m: &MeshFigures,
    akash: Option<&AkashFigures>,
    bytes: &[u64],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# leasemesh bench\n");
    let _ = writeln!(
        s,
        "{} nodes ({} providers, 1 settler, {} tenants), {} orders/s for {} s, bid window {} ms, epoch {} ms, chain `{}` at {} ms blocks, load average (1 min) {:.2} at the end.\n",
        line.nodes, args.providers, args.tenants, args.orders_per_s, args.duration_s,
        args.bid_window_ms, args.epoch_ms, line.chain, args.block_time_ms, line.loadavg_1m
    );
    let _ = writeln!(s, "Container runtime: **none** (`[provider.runtime] kind = \"none\"`): providers run the real bid engine and inventory; a lease whose sealed manifest matches its order is Running at once, without containers. Docker is not measured.\n");
    let _ = writeln!(s, "| figure | leasemesh | Akash-style | ratio |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| order → award/lease p50 (ms) | {} | {} | {} |",
        opt(line.p50_order_to_award_ms),
        opt(line.akash_p50_order_to_lease_ms),
        opt(line.speedup_p50)
    );
    let _ = writeln!(
        s,
        "| order → award/lease p99 (ms) | {} | {} | |",
        opt(line.p99_order_to_award_ms),
        opt(line.akash_p99_order_to_lease_ms)
    );
    let _ = writeln!(
        s,
        "| chain txs per lease | {} | {} | |",
        opt(line.txs_per_lease),
        opt(line.akash_txs_per_lease)
    );
    let _ = writeln!(
        s,
        "| gas per lease | {} | {} | {} |",
        opt(line.gas_per_lease),
        opt(line.akash_gas_per_lease),
        opt(line.gas_ratio)
    );
    let _ = writeln!(s, "| leases | {} | {} | |\n", line.leases, opt(line.akash_leases));
    let _ = writeln!(s, "| leasemesh figure | value |\n|---|---|");
    let rows: Vec<(&str, String)> = vec![
        ("orders posted / awarded", format!("{} / {}", line.orders, line.awarded)),
        (
            "order → first bid p50 / p99 (ms)",
            format!(
                "{} / {}",
                opt(line.p50_order_to_first_bid_ms),
                opt(line.p99_order_to_first_bid_ms)
            ),
        ),
        (
            "coverage 50 / 90 / 99 / 100 % of nodes, median order (ms)",
            format!(
                "{} / {} / {} / {}",
                opt(line.coverage_p50_ms),
                opt(line.coverage_p90_ms),
                opt(line.coverage_p99_ms),
                opt(line.coverage_p100_ms)
            ),
        ),
        ("coverage 99 %, p99 over orders (ms)", opt(line.coverage_p99_ms_worst_orders)),
        (
            "RSS per node at the end, median / max seen (MB)",
            format!("{} / {}", line.rss_mb_median, line.rss_mb_max),
        ),
        (
            "CPU per node, median / max (% of a core)",
            format!("{} / {}", line.cpu_pct_median, line.cpu_pct_max),
        ),
        ("threads per node (median)", opt(median_u64(&m.threads))),
        (
            "bytes sent per node per order, median / max",
            format!("{} / {}", opt(line.bytes_sent_per_node_per_order), opt(bytes.last())),
        ),
        (
            "settlement txs / gas on the chain",
            format!("{} / {}", opt(line.settle_txs), opt(line.settle_gas)),
        ),
        ("orders refused by the node API", m.failed_posts.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(s, "\nPlots: [latency CDFs](latency_cdf.svg), [coverage against time](coverage.svg), [RSS against orders held](rss.svg).\n");
    let _ = writeln!(s, "## How it is measured\n");
    let _ = writeln!(s, "- Latencies: the bench subscribes to every node's `/v1/events` stream and stamps each event on receipt (the events carry no time of their own); order → first bid and → award are seen at the tenant's node. Coverage: when each node's stream reported the order.");
    let _ = writeln!(s, "- RSS: `/proc/PID/status` VmRSS every 500 ms; CPU: `/proc/PID/stat` utime+stime over the load phase. Bytes: the kernel's `bytes_sent` of each node's established TCP sockets (`ss -tinp`), API sockets excluded, difference over the load phase (libp2p payload and framing, no TCP/IP headers), divided by the orders posted.");
    let _ = writeln!(s, "- Chain (devnet): every tx and its gas in the blocks from the start of the load until the settler has been quiet for 4 blocks after the last lease's term ended: whole settlement batches only. Leases end after `--lease-term-ms` ({} ms).", args.lease_term_ms);
    if let Some(a) = akash {
        let _ = writeln!(s, "\n## The Akash-style baseline\n");
        let _ = writeln!(s, "{} concurrent tenants on the same devnet and block time, each with {} provider accounts, one lease after another for {} s. Per lease: the order tx (a `MsgSend` of a {} deposit to an escrow account, memo {} bytes: the proto JSON of the `MsgCreateDeployment` of the same SDL), one bid tx per provider (a {} deposit, memo the `MsgCreateBid`), after the bid window the tenant's lease tx for the cheapest bid (memo the `MsgCreateLease`), and the provider's withdrawal tx. Each waits for its block, as the Akash CLI does; order → lease ends when the lease tx is in a block.\n",
            a.lanes, args.providers, args.duration_s, super::akash::ORDER_DEPOSIT, a.memo_bytes, super::akash::BID_DEPOSIT);
        let _ = writeln!(s, "Copied: the number of txs and their signers, deposits moving, tx sizes of the same order of magnitude, waiting for inclusion. Not copied: the deployment, market and escrow modules' own state writes and checks (so the baseline's gas is a lower bound of Akash's), the escrow accounting (the escrow is a plain account; the withdrawal moves 1 unit), the provider's bid engine delay and Akash's 0.5-block bid polling. The devnet's `max_memo_characters` is raised to hold the memos.");
    }
    s
}

fn median_u64(v: &[u64]) -> Option<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    quantile(&v, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_coverage() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[], 0.5), None);
        // 4 nodes: posted at 1000, held at +0, +10, +20, never by the fourth.
        let held = [1000, 1010, 1020];
        assert_eq!(coverage_ms(1000, &held, 4, 0.5), Some(10));
        assert_eq!(coverage_ms(1000, &held, 4, 0.75), Some(20));
        assert_eq!(coverage_ms(1000, &held, 4, 1.0), None);
    }

    #[test]
    fn svg_has_a_polyline_per_series() {
        let s = svg_plot(
            "t<1>",
            "x",
            "y",
            &[
                Series { name: "a", color: "red", points: cdf(&[1, 2, 3]) },
                Series { name: "b", color: "blue", points: vec![(0.0, 0.0), (5.0, 2.0)] },
            ],
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("t&lt;1&gt;"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
    }
}
