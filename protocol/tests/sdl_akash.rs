//! What Akash's current SDL parser (chain-sdk `go/sdl`) and its input schema refuse, leasemesh
//! refuses too; keys of that schema leasemesh cannot honour yet are refused as "not supported
//! yet", never dropped; where leasemesh reads more than Akash, the warning says Akash's CLI would
//! refuse the file.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use leasemesh_protocol::sdl::{self, OrderParams, Sdl, SdlError};
use leasemesh_protocol::Keypair;

/// A valid 2.1 file with an IP endpoint and a mounted persistent volume; tests change one thing.
const BASE: &str = r#"version: "2.1"
endpoints:
  myip:
    kind: ip
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        as: 80
        accept: [www.example.com]
        to:
          - global: true
            ip: myip
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta2
  placement:
    dc:
      pricing:
        web:
          denom: uakt
          amount: 100
deployment:
  web:
    dc:
      profile: web
      count: 1
"#;

fn convert(text: &str) -> Result<Sdl, SdlError> {
    let s = sdl::parse(text)?;
    let params = OrderParams::new(Keypair::from_seed_label("sdl-akash").public(), "akash1t");
    sdl::to_orders(&s, &params)?;
    Ok(s)
}

#[track_caller]
fn with(find: &str, replace: &str) -> String {
    assert!(BASE.contains(find), "{find:?} not in BASE");
    BASE.replacen(find, replace, 1)
}

/// Refused with this kind, at a path containing `path`, and a message containing `says`.
#[track_caller]
fn refused(text: &str, kind: &str, path: &str, says: &str) {
    match convert(text) {
        Ok(_) => panic!("expected {kind} at {path}, but it converted:\n{text}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(e.path().unwrap_or("").contains(path), "{e}");
            assert!(e.line().is_some_and(|l| l >= 1), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}

#[test]
fn base_converts_without_warnings() {
    let s = convert(BASE).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn the_classes_the_issue_names_are_refused() {
    // A persistent volume that is never mounted (Akash 2.0 refuses it when nothing is mounted).
    let unmounted =
        with("    params:\n      storage:\n        data:\n          mount: /data\n", "")
            .replace("version: \"2.1\"", "version: \"2.0\"");
    refused(&unmounted, "bad_value", "resources.storage", "never mounted");
    // An endpoint declared but used by no service.
    let unused = with("endpoints:\n", "endpoints:\n  spare:\n    kind: ip\n");
    refused(&unused, "bad_value", "endpoints.spare", "no deployed service uses");
    // Endpoint names Akash refuses: upper case, one letter, a digit first, a dot.
    for name in ["MyIp", "m", "1ip", "my.ip"] {
        let text = BASE.replace("myip", name);
        refused(&text, "bad_value", "endpoints.", "endpoint name");
    }
    // Reclamation windows that are zero or malformed.
    for w in ["0s", "0h", "abc", "1.5h", "24", "-1h", "1d", "01h"] {
        let text = format!("{BASE}reclamation:\n  min_window: \"{w}\"\n");
        refused(&text, "bad_value", "reclamation.min_window", "whole number above 0");
    }
}

#[test]
fn the_go_parsers_other_refusals() {
    // An unknown top-level key ("sdl: unexpected field").
    refused(&format!("{BASE}placement: {{}}\n"), "bad_value", "placement", "top-level");
    // Storage: an unknown attribute, a class Akash does not know, a class without persistent.
    let attr = "              class: beta2\n";
    refused(
        &with(attr, "              class: beta2\n              speed: fast\n"),
        "bad_value",
        "attributes.speed",
        "unknown keys",
    );
    refused(
        &with(attr, "              class: ssd\n"),
        "bad_value",
        "attributes.class",
        "storage classes",
    );
    let ephemeral_class = with(
        "          - size: 1Gi\n",
        "          - size: 1Gi\n            attributes: {class: beta1}\n",
    );
    refused(&ephemeral_class, "bad_value", "attributes.class", "not persistent");
    // GPU: unknown keys in gpu and in its attributes.
    let gpu = "          size: 1Gi\n        gpu:\n          units: 1\n          count: 2\n          attributes: {vendor: {nvidia: }}\n";
    refused(&with("          size: 1Gi\n", gpu), "bad_value", "gpu.count", "unknown keys");
    let gpu = "          size: 1Gi\n        gpu:\n          units: 1\n          attributes: {vendor: {nvidia: }, model: a100}\n";
    refused(&with("          size: 1Gi\n", gpu), "bad_value", "attributes.model", "unknown keys");
    // A zero price.
    refused(&with("amount: 100", "amount: 0"), "bad_value", "pricing.web.amount", "zero amount");
    // http_options over Akash's limits, and off with other cases.
    let port = "        as: 80\n";
    for (opt, key) in [
        ("max_body_size: 104857601", "max_body_size"),
        ("proxy_buffer_size: 1048577", "proxy_buffer_size"),
        ("read_timeout: 60001", "read_timeout"),
        ("send_timeout: 60001", "send_timeout"),
        ("next_cases: [off, error]", "next_cases"),
        ("next_cases: [\"418\"]", "next_cases[0]"),
    ] {
        let text = with(port, &format!("        as: 80\n        http_options: {{{opt}}}\n"));
        refused(&text, "bad_value", key, "");
    }
    // No global port at all (Akash's manifest check: "zero global services").
    let text =
        with("          - global: true\n            ip: myip\n", "          - service: web\n")
            .replace("endpoints:\n  myip:\n    kind: ip\n", "");
    refused(&text, "bad_value", "services", "no global port");
    // Service names, env names and accept hosts Akash's manifest check refuses.
    refused(
        &BASE
            .replace("  web:\n    image", "  Web_1:\n    image")
            .replace("  web:\n    dc", "  Web_1:\n    dc"),
        "bad_value",
        "services.Web_1",
        "service names",
    );
    refused(
        &with("    params:\n", "    env: [\"1BAD=x\"]\n    params:\n"),
        "bad_value",
        "services.web.env",
        "env name",
    );
    refused(&with("www.example.com", "\"*.example.com\""), "bad_value", "accept", "DNS name");
    // One IP endpoint, port and protocol for two services.
    let two = BASE
        .replace("deployment:\n", "deployment:\n  api:\n    dc:\n      profile: web\n      count: 1\n")
        .replace("profiles:\n", "  api:\n    image: nginx\n    expose:\n      - port: 80\n        to:\n          - global: true\n            ip: myip\n    params:\n      storage:\n        data: {mount: /data}\nprofiles:\n");
    refused(&two, "bad_value", "expose[0].to", "already used by service");
}

#[test]
fn tee_is_read_and_checked_as_akash_does() {
    let tee = |kind: &str| with("    params:\n", &format!("    params:\n      tee: {kind}\n"));
    let s = sdl::parse(&tee("cpu")).unwrap();
    assert_eq!(s.services[0].tee.as_ref().map(|t| t.kind.as_str()), Some("cpu"));
    refused(&tee("sgx"), "bad_value", "params.tee", "cpu and cpu-gpu");
    // cpu-gpu needs GPUs in the profile.
    refused(&tee("cpu-gpu"), "bad_value", "params.tee", "needs GPUs");
}

#[test]
fn schema_keys_leasemesh_cannot_honour_are_refused_as_not_supported_yet() {
    let cases = [
        (format!("{BASE}reclamation:\n  min_window: 24h\n"), "reclamation"),
        (format!("{BASE}include: [other.yaml]\n"), "include"),
        (
            with("    params:\n", "    dependencies:\n      - service: db\n    params:\n"),
            "dependencies",
        ),
        (
            with("    params:\n", "    params:\n      permissions:\n        read: [logs]\n"),
            "params.permissions",
        ),
        (
            with(
                "          units: 1\n",
                "          units: 1\n          attributes: {arch: amd64}\n",
            ),
            "cpu.attributes.arch",
        ),
    ];
    for (text, key) in cases {
        match convert(&text) {
            Err(e @ SdlError::NotYet { .. }) => {
                assert_eq!(e.kind(), "not_yet");
                assert!(e.to_string().contains(&format!("not supported yet: {key}")), "{e}");
            }
            other => panic!("{key}: expected not supported yet, got {other:?}"),
        }
    }
}

#[test]
fn reading_more_than_akash_warns_that_its_cli_would_refuse_the_file() {
    // A single storage map with its own name (ghost__deploy-mysql.yaml): Akash names it default.
    let text = r#"version: "2.0"
services:
  db:
    image: mysql
    expose: [{port: 3306, to: [{global: true}]}]
    params:
      storage:
        mysql: {mount: /var/lib/mysql}
profiles:
  compute:
    db:
      resources:
        cpu: {units: 1}
        memory: {size: 1Gi}
        storage:
          name: mysql
          size: 5Gi
          attributes: {persistent: true, class: beta2}
  placement:
    dc:
      pricing:
        db: {denom: uakt, amount: 10}
deployment:
  db:
    dc: {profile: db, count: 1}
"#;
    let s = convert(text).unwrap();
    let w = s.warnings.iter().find(|w| w.path.ends_with("storage.name")).unwrap();
    assert_eq!(w.line, 16);
    assert!(w.message.contains("Akash's CLI would refuse"), "{w}");
    // Lower-case size units, read as Console reads them.
    let s = convert(&with("size: 1Gi\n        storage", "size: 1gb\n        storage")).unwrap();
    assert!(
        s.warnings.iter().any(|w| w.message.contains("Akash's CLI would refuse")),
        "{:?}",
        s.warnings
    );
    // A persistent volume never mounted in a 2.1 file: Akash's 2.1 parser lets it through.
    let s =
        convert(&with("    params:\n      storage:\n        data:\n          mount: /data\n", ""))
            .unwrap();
    assert!(s.warnings.iter().any(|w| w.message.contains("never mounted")), "{:?}", s.warnings);
}

#[test]
fn unknown_keys_deeper_down_stay_warnings() {
    let s =
        convert(&with("    params:\n", "    depends_on: [db]\n    colour: blue\n    params:\n"))
            .unwrap();
    let msgs: Vec<&str> = s.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("docker-compose key")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("a typo?")), "{msgs:?}");
}

#[test]
fn tee_and_http_options_are_carried_into_the_order_and_the_manifest() {
    use leasemesh_protocol::{Manifest, Signed, TeeKind};
    let text = with("    params:\n", "    params:\n      tee: cpu\n").replace(
        "        as: 80\n",
        "        as: 80\n        http_options: {max_body_size: 2097152, next_cases: [\"502\"]}\n",
    );
    let s = sdl::parse(&text).unwrap();
    let params = OrderParams::new(Keypair::from_seed_label("sdl-akash").public(), "akash1t");
    let d = sdl::to_orders(&s, &params).unwrap();
    let o = &d.orders[0];
    assert_eq!(o.groups[0].resources.tee, Some(TeeKind::Cpu));
    assert_eq!(o.version, 2, "an order asking for a TEE is a version-2 order");
    let svc = &d.manifest.groups[0].services[0];
    assert_eq!(svc.tee, Some(TeeKind::Cpu));
    let h = svc.expose[0].http_options.as_ref().unwrap();
    assert_eq!((h.max_body_size, h.read_timeout_ms, h.next_tries), (2 << 20, 60_000, 3));
    assert_eq!(h.next_cases, ["502"]);
    // Both survive the wire: the signed order and the manifest decode to the same values.
    let key = Keypair::from_seed_label("sdl-akash");
    let signed = Signed::sign(o.clone(), &key);
    assert_eq!(
        Signed::<leasemesh_protocol::Order>::decode_verified(&signed.encode()).unwrap(),
        signed
    );
    assert_eq!(Manifest::decode(&d.manifest.encode()).unwrap(), d.manifest);
    assert_eq!(o.manifest_hash, d.manifest.hash());
    // Without TEE or HTTP options, order and manifest stay version 1.
    let d = sdl::to_orders(&sdl::parse(BASE).unwrap(), &params).unwrap();
    assert_eq!((d.orders[0].version, d.manifest.version), (1, 1));
    assert_eq!(d.orders[0].groups[0].resources.tee, None);
}
