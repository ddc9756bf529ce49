//! Every real Akash SDL file in `shared/akash-sdl` (380 files from awesome-akash) converts, or is
//! refused with a named reason; only the four known-broken files and three that Akash's Go
//! parser refuses too may be refused.
//!
//! Files whose sizes use lower-case or decimal-`B` units (`gi`, `gb`, `Mb`, ...), which Akash's Go
//! parser refuses and Akash Console's TypeScript parser reads, are accepted on purpose with a
//! warning that names the line (see docs/sdl.md): 22 files use them; 21 convert, and one
//! (Venice-ElizaOS) is refused for another reason that Akash's Go parser also refuses.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leasemesh_protocol::sdl::{self, OrderParams, SdlError};
use leasemesh_protocol::Keypair;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/akash-sdl")
}

fn corpus() -> Vec<(String, String)> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the SDL corpus at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

/// The README's known-broken files and the error each must get: (file, kind, path fragment).
const BROKEN: [(&str, &str, &str); 4] = [
    ("teamspeak__deploy.yaml", "yaml", ""),
    ("matomo__deploy.yaml", "bad_value", ".to[0]"),
    ("minio__deploy.yml", "wrong_type", ".to"),
    ("steamcmd__deploy.yaml", "missing", ".port"),
];

/// Files Akash's Go parser refuses that leasemesh refuses too:
/// - Venice-ElizaOS: `units: [16]` is a list, not a number (Akash also refuses its `32gb`);
/// - codex: `http_options.max_body_size` of 1 GiB, over Akash's 100 MiB limit;
/// - postgres-s3-backup: no port is global, and Akash's manifest check refuses "zero global
///   services".
const GO_REFUSES_TOO: [(&str, &str, &str); 3] = [
    ("Venice-ElizaOS__deploy.yml", "wrong_type", "resources.cpu.units"),
    ("codex__deploy.yml", "bad_value", "http_options.max_body_size"),
    ("postgres-s3-backup__deploy.yaml", "bad_value", "services"),
];

/// The files that convert only thanks to the lenient size units (`gi`, `gb`, `GB`, `Mb`, ...).
/// Akash's Go parser refuses all of them; Akash Console's TypeScript parser reads them.
const LENIENT_UNIT_FILES: [&str; 21] = [
    "automatic-deployment-CICD-template__deploy.yaml",
    "avalanche__deploy.yaml",
    "bancor__deploy.yaml",
    "bancor__deploy_static.yaml",
    "bark-small__deploy.yaml",
    "bitbucket__deploy.yaml",
    "centrifuge__deploy.yaml",
    "chromadb__deploy.yaml",
    "elasticsearch__deploy.yaml",
    "elasticsearch__deploy_with_kibana.yaml",
    "ghrunner__deploy.yaml",
    "gitea__deploy.yaml",
    "gitea__deploy_postgres.yaml",
    "handshake__deploy.yaml",
    "onetimepad__deploy.yaml",
    "paperclip__deploy.yaml",
    "ray__deploy.yaml",
    "ray__ray-nightly-py310-gpu.yml",
    "satisfactory-server__deploy.yaml",
    "tensorflow-jupyter-ezkl__deploy.yaml",
    "uptime-kuma__deploy.yaml",
];

fn params() -> OrderParams {
    OrderParams::new(Keypair::from_seed_label("corpus-tenant").public(), "akash1tenant")
}

#[test]
fn every_corpus_file_converts_or_fails_with_a_named_reason() {
    let files = corpus();
    assert!(files.len() >= 380, "expected the 380 corpus files, found {}", files.len());
    let mut converted = 0usize;
    let mut refused: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut lenient_units = Vec::new();
    let mut problems = Vec::new();
    let (mut orders, mut services, mut gpus, mut warnings) = (0usize, 0usize, 0u64, 0usize);

    for (name, text) in &files {
        let outcome = std::panic::catch_unwind(|| {
            let parsed = sdl::parse(text)?;
            let deployment = sdl::to_orders(&parsed, &params())?;
            Ok::<_, SdlError>((parsed, deployment))
        });
        let expected_broken = BROKEN.iter().chain(&GO_REFUSES_TOO).find(|(f, _, _)| f == name);
        match (outcome, expected_broken) {
            (Err(_), _) => problems.push(format!("{name}: PANICKED")),
            (Ok(Ok((parsed, deployment))), None) => {
                converted += 1;
                orders += deployment.orders.len();
                services +=
                    deployment.manifest.groups.iter().map(|g| g.services.len()).sum::<usize>();
                gpus += deployment.gpus();
                warnings += parsed.warnings.len();
                if parsed.warnings.iter().any(|w| w.message.contains("size unit")) {
                    lenient_units.push(name.clone());
                }
                if name == "ghost__deploy-mysql.yaml"
                    && !parsed.warnings.iter().any(|w| {
                        w.path.ends_with("storage.name")
                            && w.message.contains("Akash's CLI would refuse")
                    })
                {
                    problems.push(format!("{name}: no warning for its named storage map"));
                }
                let hash = deployment.manifest.hash();
                for o in &deployment.orders {
                    assert_eq!(o.manifest_hash, hash, "{name}");
                    assert!(deployment.manifest.group(&o.placement.name).is_some(), "{name}");
                }
            }
            (Ok(Ok(_)), Some(_)) => {
                problems.push(format!("{name}: known broken, but it converted"))
            }
            (Ok(Err(e)), None) => {
                problems.push(format!("{name}: refused although Akash accepts it: {e}"))
            }
            (Ok(Err(e)), Some((_, kind, path))) => {
                assert!(e.line().is_some_and(|l| l >= 1), "{name}: no line in {e}");
                if e.kind() != *kind || !e.path().unwrap_or("").contains(path) {
                    problems.push(format!("{name}: refused for another reason than expected ({kind} at *{path}*): {e}"));
                }
                println!("refused {name}: [{}] {e}", e.kind());
                refused.entry(e.kind()).or_default().push(name.clone());
            }
        }
    }
    let refused_total: usize = refused.values().map(Vec::len).sum();
    println!(
        "SDL corpus: {} files, {converted} converted, {refused_total} refused {:?}; {} with lenient size units; {orders} orders, {services} services, {gpus} GPUs, {warnings} warnings",
        files.len(),
        refused.iter().map(|(k, v)| (*k, v.len())).collect::<BTreeMap<_, _>>(),
        lenient_units.len(),
    );
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert_eq!(refused_total, BROKEN.len() + GO_REFUSES_TOO.len());
    assert_eq!(lenient_units, LENIENT_UNIT_FILES, "files read only thanks to lenient units");
}

/// Truncated and byte-flipped corpus files: an error or a result, never a panic.
#[test]
fn mutated_corpus_files_never_panic() {
    let files = corpus();
    let mut state: u64 = 0x5eed_5eed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, text) in files.iter().step_by(7) {
        let bytes = text.as_bytes();
        for _ in 0..8 {
            let mut m = bytes.to_vec();
            match next() % 4 {
                0 => m.truncate((next() as usize) % (m.len() + 1)),
                1 => {
                    for _ in 0..4 {
                        let i = (next() as usize) % m.len().max(1);
                        if let Some(b) = m.get_mut(i) {
                            let alphabet = b" :-[]{}\n'\"&*!#|>0aZ\t";
                            *b = alphabet[(next() as usize) % alphabet.len()];
                        }
                    }
                }
                2 => {
                    let i = (next() as usize) % (m.len() + 1);
                    let j = (next() as usize) % (m.len() + 1);
                    let (a, b) = (i.min(j), i.max(j));
                    m.drain(a..b);
                }
                _ => {
                    let i = (next() as usize) % (m.len() + 1);
                    m.splice(i..i, b"\n  - x: &a [*a]\n".iter().copied());
                }
            }
            let s = String::from_utf8_lossy(&m);
            let r = std::panic::catch_unwind(|| {
                sdl::parse(&s).and_then(|p| sdl::to_orders(&p, &params()))
            });
            assert!(r.is_ok(), "{name}: a mutation panicked:\n{s}");
        }
    }
}
