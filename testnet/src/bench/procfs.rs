//! What the kernel says about the node processes: `/proc/PID/status` (VmRSS),
//! `/proc/PID/stat` (utime + stime), `/proc/loadavg`, and `ss` for the TCP bytes each process
//! sent.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// The pid of the process whose command line holds `--home <home>` (a node of the mesh).
pub fn pid_of_home(home: &Path) -> Option<u32> {
    let want = home.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"--home" && w[1] == want)
            && args.iter().any(|a| *a == b"run")
        {
            return Some(pid);
        }
    }
    None
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Threads of the process.
pub fn threads(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime is field 14 of the line, i.e. index 11 here.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ): 100 on every Linux ABI in use.
pub fn ticks_per_s() -> u64 {
    100
}

/// The 1-minute load average.
pub fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// TCP bytes sent per pid, over the open sockets whose local port is not in `skip_ports`
/// (the nodes' API ports: the bench's own requests and event streams). From `ss -tinpH`:
/// the kernel's `bytes_sent` of each socket (payload, retransmissions included).
pub fn tcp_bytes_sent(skip_ports: &[u16]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(o) = Command::new("ss").args(["-tinpH", "state", "established"]).output() else {
        return out;
    };
    let text = String::from_utf8_lossy(&o.stdout);
    // Each socket is a line, its info on the following indented line(s).
    let mut sockets: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = sockets.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            sockets.push(line.to_owned());
        }
    }
    for s in sockets {
        let fields: Vec<&str> = s.split_whitespace().collect();
        // Recv-Q Send-Q Local Peer [users:(...)] info...
        let local_port =
            fields.get(2).and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
        if local_port.is_some_and(|p| skip_ports.contains(&p)) {
            continue;
        }
        let Some(pid) = s
            .find("pid=")
            .and_then(|i| s[i + 4..].split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let sent = s
            .find("bytes_sent:")
            .and_then(|i| s[i + 11..].split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(pid).or_default() += sent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 1 << 20);
        assert!(threads(me).unwrap() >= 1);
        let before = cpu_ticks(me).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_ticks(me).unwrap() >= before);
        assert!(ticks_per_s() > 0);
    }
}
