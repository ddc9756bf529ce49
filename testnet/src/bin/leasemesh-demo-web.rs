//! `leasemesh-demo-web`: the demo's web service. A static-file HTTP/1.0 server with nothing but
//! std, so the demo's container image is this binary and the few shared libraries it links
//! (`FROM scratch`), built on any machine that has cargo — no busybox, no registry.
//!
//! `leasemesh-demo-web [--port 8080] [--root /www]`: serves GET and HEAD of the files under
//! `--root` (a directory serves its `index.html`), one thread per connection, one log line per
//! request on stdout. Prints `$GREETING` at start when it is set (the demo SDL sets it), so the
//! lease's logs show something the tenant wrote.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest request head read (request line and headers).
const MAX_HEAD: u64 = 16 * 1024;
/// Largest file served.
const MAX_FILE: u64 = 16 << 20;

struct Args {
    port: u16,
    root: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 8080, root: PathBuf::from("/www") };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--port" | "-p" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("--port {v}: not a port number"))?;
            }
            "--root" | "-h" => args.root = PathBuf::from(value("--root")?),
            "--help" => {
                return Err("usage: leasemesh-demo-web [--port 8080] [--root /www]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// The file `target` names under `root`, refusing any path that could leave it.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    let mut out = root.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8], head_only: bool) -> u16 {
    let head = format!(
        "HTTP/1.0 {status}\r\nServer: leasemesh-demo-web\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    if !head_only {
        let _ = s.write_all(body);
    }
    let _ = s.flush();
    status.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn handle(mut stream: TcpStream, root: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half.take(MAX_HEAD));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    // Drain the headers (until the blank line or the head limit).
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim_end() != "" {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    let text = "text/plain; charset=utf-8";
    let code = if method != "GET" && !head_only {
        respond(&mut stream, "405 Method Not Allowed", text, b"method not allowed\n", false)
    } else {
        match resolve(root, target) {
            None => respond(&mut stream, "400 Bad Request", text, b"bad path\n", head_only),
            Some(path) => match std::fs::File::open(&path) {
                Ok(f) => {
                    let mut body = Vec::new();
                    match f.take(MAX_FILE).read_to_end(&mut body) {
                        Ok(_) => {
                            respond(&mut stream, "200 OK", content_type(&path), &body, head_only)
                        }
                        Err(_) => {
                            respond(&mut stream, "404 Not Found", text, b"not found\n", head_only)
                        }
                    }
                }
                Err(_) => respond(&mut stream, "404 Not Found", text, b"not found\n", head_only),
            },
        }
    };
    println!("{peer} {method} {target} {code}");
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Ok(g) = std::env::var("GREETING") {
        println!("{g}");
    }
    let listener = match TcpListener::bind(("0.0.0.0", args.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on port {}: {e}", args.port);
            std::process::exit(1);
        }
    };
    println!("serving {} on port {}", args.root.display(), args.port);
    let root = Arc::new(args.root);
    for stream in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || handle(stream, &root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/nonexistent-root");
        assert_eq!(resolve(root, "/a/b.html"), Some(root.join("a/b.html")));
        assert_eq!(resolve(root, "/a/./b.html?x=1"), Some(root.join("a/b.html")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../etc/passwd"), None);
        assert_eq!(resolve(root, "etc/passwd"), None);
    }
}
