//! Every kind of SDL error names the key path and the line; conversions give what the SDL asks.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use leasemesh_protocol::manifest::MountKind;
use leasemesh_protocol::sdl::{self, Deployment, OrderParams, Sdl, SdlError};
use leasemesh_protocol::{GpuInterface, Keypair};

/// A small valid SDL; tests replace one line. Line numbers are in the comments.
const BASE: &str = r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        as: 8080
        to:
          - global: true
    env:
      - MODE=prod
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 2
"#;
// Lines: 1 version, 3 web, 6 port, 17 units, 19 size, 21 size, 23 dcloud, 24 pricing, 27 amount,
// 31 profile, 32 count.

fn params() -> OrderParams {
    OrderParams::new(Keypair::from_seed_label("sdl-errors").public(), "akash1tenant")
}

fn convert(text: &str) -> Result<(Sdl, Deployment), SdlError> {
    let s = sdl::parse(text)?;
    let d = sdl::to_orders(&s, &params())?;
    Ok((s, d))
}

fn with(find: &str, replace: &str) -> String {
    assert!(BASE.contains(find), "{find:?} not in BASE");
    BASE.replacen(find, replace, 1)
}

#[track_caller]
fn err(text: &str) -> SdlError {
    match convert(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_err(e: &SdlError, kind: &str, path: &str, line: usize) {
    assert_eq!(e.kind(), kind, "{e}");
    assert_eq!(e.path(), Some(path), "{e}");
    assert_eq!(e.line(), Some(line), "{e}");
    let shown = e.to_string();
    assert!(shown.contains(path) && shown.contains(&format!("line {line}")), "{shown}");
}

#[test]
fn base_converts_with_the_per_hour_price() {
    let (s, d) = convert(BASE).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(d.orders.len(), 1);
    let o = &d.orders[0];
    // 1000 per block per replica × 2 replicas × 600 blocks per hour.
    assert_eq!(o.max_price_per_hour.amount, 1_200_000);
    assert_eq!(o.max_price_per_hour.denom, "uakt");
    assert_eq!(o.placement.name, "dcloud");
    assert_eq!(o.groups[0].count, 2);
    assert_eq!(o.groups[0].resources.cpu_millis, 500);
    assert_eq!(o.groups[0].resources.memory_bytes, 512 << 20);
    assert_eq!(o.groups[0].resources.ephemeral_storage_bytes, 1 << 30);
    assert_eq!(o.manifest_hash, d.manifest.hash());
    let svc = &d.manifest.group("dcloud").unwrap().services[0];
    assert_eq!(
        (svc.expose[0].port, svc.expose[0].external_port, svc.expose[0].global),
        (80, 8080, true)
    );
    assert_eq!(svc.env[0].name, "MODE");
}

#[test]
fn block_time_and_decimal_amounts_convert_exactly() {
    let s = sdl::parse(&with("amount: 1000", "amount: 0.5")).unwrap();
    let mut p = params();
    p.block_time_ms = 5_000; // 720 blocks per hour
    let d = sdl::to_orders(&s, &p).unwrap();
    assert_eq!(d.orders[0].max_price_per_hour.amount, 720); // 0.5 × 2 × 720
    p.block_time_ms = 7_000; // 514.28 blocks per hour: rounded down once, at the end
    let d = sdl::to_orders(&s, &p).unwrap();
    assert_eq!(d.orders[0].max_price_per_hour.amount, 514);
    p.block_time_ms = 0;
    let e = sdl::to_orders(&s, &p).unwrap_err();
    assert_eq!(e.kind(), "params");
    assert_eq!(e.line(), None);
}

#[test]
fn yaml_syntax_and_duplicate_keys() {
    let e = err("version: \"2.0\"\nservices: [\n");
    assert_eq!(e.kind(), "yaml");
    assert!(e.line().is_some_and(|l| l >= 2), "{e}");
    let e = err(&with("      count: 2\n", "      count: 2\n      count: 3\n"));
    assert_eq!(e.kind(), "yaml");
    assert_eq!(e.line(), Some(33));
    assert!(e.to_string().contains("already defined at line 32"), "{e}");
    let e = err("");
    assert_err(&e, "missing", "version", 1);
}

#[test]
fn missing_keys() {
    assert_err(
        &err(&with("          units: 0.5\n", "          shares: 1\n")),
        "missing",
        "profiles.compute.web.resources.cpu.units",
        16,
    );
    assert_err(&err(&with("    image: nginx:1.27\n", "")), "missing", "services.web.image", 3);
    assert_err(&err(&with("      count: 2\n", "")), "missing", "deployment.web.dcloud.count", 30);
    assert_err(
        &err(&with("      - port: 80\n", "      - port:\n")),
        "missing",
        "services.web.expose[0].port",
        6,
    );
    assert_err(
        &err(&with("        web:\n          denom", "        other:\n          denom")),
        "missing",
        "profiles.placement.dcloud.pricing.web",
        24,
    );
}

#[test]
fn wrong_types() {
    assert_err(
        &err(&with(
            "        to:\n          - global: true\n",
            "        to:\n          global: true\n",
        )),
        "wrong_type",
        "services.web.expose[0].to",
        9,
    );
    assert_err(
        &err(&with("units: 0.5", "units: [1]")),
        "wrong_type",
        "profiles.compute.web.resources.cpu.units",
        17,
    );
    assert_err(&err("- a\n- b\n"), "wrong_type", "(document)", 1);
}

#[test]
fn bad_values() {
    assert_err(
        &err(&with("units: 0.5", "units: lots")),
        "bad_value",
        "profiles.compute.web.resources.cpu.units",
        17,
    );
    assert_err(
        &err(&with("units: 0.5", "units: 0")),
        "bad_value",
        "profiles.compute.web.resources.cpu.units",
        17,
    );
    assert_err(
        &err(&with("size: 512Mi", "size: 512Qi")),
        "bad_value",
        "profiles.compute.web.resources.memory.size",
        19,
    );
    assert_err(
        &err(&with("port: 80", "port: 70000")),
        "bad_value",
        "services.web.expose[0].port",
        6,
    );
    assert_err(
        &err(&with("amount: 1000", "amount: -5")),
        "bad_value",
        "profiles.placement.dcloud.pricing.web.amount",
        27,
    );
    // Akash refuses a zero amount; a positive one that rounds to 0 per hour is refused too.
    assert_err(
        &err(&with("amount: 1000", "amount: 0")),
        "bad_value",
        "profiles.placement.dcloud.pricing.web.amount",
        27,
    );
    assert_err(
        &err(&with("amount: 1000", "amount: 0.0000001")),
        "bad_value",
        "profiles.placement.dcloud.pricing",
        24,
    );
    assert_err(&err(&with("count: 2", "count: 0")), "bad_value", "deployment.web.dcloud.count", 32);
    assert_err(&err(&with("version: \"2.0\"", "version: \"3.0\"")), "bad_value", "version", 1);
    assert_err(
        &err(&with("          - global: true\n", "          - servcie: db\n")),
        "bad_value",
        "services.web.expose[0].to[0]",
        9,
    );
}

#[test]
fn unknown_references() {
    let e = err(&with("      profile: web", "      profile: big"));
    assert_err(&e, "unknown_ref", "deployment.web.dcloud.profile", 30);
    assert!(e.to_string().contains("(declared: web)"), "{e}");
    assert_err(
        &err(&with("  web:\n    dcloud:", "  api:\n    dcloud:")),
        "unknown_ref",
        "deployment.api",
        29,
    );
    let mount =
        "      - MODE=prod\n    params:\n      storage:\n        data:\n          mount: /data\n";
    assert_err(
        &err(&with("      - MODE=prod\n", mount)),
        "unknown_ref",
        "services.web.params.storage.data",
        14,
    );
    let ip = "          - global: true\n            ip: myip\n";
    assert_err(
        &err(&with("          - global: true\n", ip)),
        "unknown_ref",
        "services.web.expose[0].to",
        6,
    );
}

#[test]
fn unsupported_features() {
    let creds = "      - MODE=prod\n    credentials:\n      host: ghcr.io\n      username: me\n      password: secret\n";
    assert_err(
        &err(&with("      - MODE=prod\n", creds)),
        "unsupported",
        "services.web.credentials",
        12,
    );
    let gpu = "          size: 1Gi\n        gpu:\n          units: 1\n          attributes:\n            vendor:\n              nvidia:\n              amd:\n";
    assert_err(
        &err(&with("          size: 1Gi\n", gpu)),
        "unsupported",
        "profiles.compute.web.resources.gpu.attributes.vendor",
        25,
    );
}

const TWO_SERVICES: &str = r#"version: "2.0"
services:
  web:
    image: nginx
    expose: [{port: 80, to: [{global: true}]}]
  db:
    image: postgres
profiles:
  compute:
    small:
      resources:
        cpu: {units: 100m}
        memory: {size: 128Mi}
        storage: {size: 256Mi}
  placement:
    eu:
      pricing:
        small: {denom: uakt, amount: 10}
    us:
      pricing:
        small: {denom: uact, amount: 3}
deployment:
  web:
    eu: {profile: small, count: 1}
  db:
    us: {profile: small, count: 4}
"#;

#[test]
fn mixed_denoms_in_one_placement_are_refused() {
    let (_, d) = convert(TWO_SERVICES).unwrap();
    assert_eq!(d.orders.len(), 2);
    assert_eq!(d.orders[0].max_price_per_hour.to_string(), "6000uakt");
    assert_eq!(d.orders[1].max_price_per_hour.to_string(), "7200uact");
    assert_eq!(d.orders[1].nonce, d.orders[0].nonce + 1);
    let one_placement = TWO_SERVICES
        .replace("    us: {profile: small, count: 4}", "    eu: {profile: other, count: 4}")
        .replace("        small: {denom: uakt, amount: 10}\n", "        small: {denom: uakt, amount: 10}\n        other: {denom: uact, amount: 3}\n")
        .replace("  placement:\n", "    other:\n      resources:\n        cpu: {units: 1}\n        memory: {size: 1Gi}\n        storage: {size: 1Gi}\n  placement:\n");
    let e = err(&one_placement);
    assert_eq!(e.kind(), "mixed_denoms", "{e}");
    assert_eq!(e.path(), Some("profiles.placement.eu.pricing.small.denom"));
    assert_eq!(e.line(), Some(23));
}

#[test]
fn overflow_and_invalid_orders() {
    let huge = "amount: 999999999999999999999999999999999999";
    assert_err(
        &err(&with("amount: 1000", huge)),
        "overflow",
        "profiles.placement.dcloud.pricing",
        24,
    );
    let s = sdl::parse(BASE).unwrap();
    let mut p = params();
    p.bid_window_ms = 1;
    let e = sdl::to_orders(&s, &p).unwrap_err();
    assert_err(&e, "invalid", "profiles.placement.dcloud", 23);
    assert!(e.to_string().contains("bid_window_ms"), "{e}");
}

#[test]
fn lenient_cases_are_accepted_with_warnings() {
    let compose = "      - MODE=prod\n    depends_on:\n      - db\n    restart: always\n";
    let (s, _) = convert(&with("      - MODE=prod\n", compose)).unwrap();
    let w: Vec<String> = s.warnings.iter().map(ToString::to_string).collect();
    assert!(w[0].starts_with("services.web.depends_on (line 12): docker-compose key"), "{w:?}");
    assert!(w[1].starts_with("services.web.restart (line 14)"), "{w:?}");

    let (s, d) = convert(&with("size: 512Mi", "size: 512mb")).unwrap();
    assert_eq!(d.orders[0].groups[0].resources.memory_bytes, 512_000_000);
    assert!(s.warnings[0].message.contains("size unit"), "{:?}", s.warnings);
    assert_eq!(s.warnings[0].line, 19);

    let (s, _) = convert(&with("version: \"2.0\"", "version: '2'")).unwrap();
    assert_eq!(s.version, "2.0");
}

#[test]
fn gpus_ram_volumes_and_persistent_storage_map_to_resources() {
    let text = r#"version: "2.1"
services:
  llm:
    image: vllm/vllm-openai
    expose:
      - port: 8000
        to: [{global: true}]
    params:
      storage:
        shm: {mount: /dev/shm}
        data: {mount: /data, readOnly: false}
profiles:
  compute:
    llm:
      resources:
        cpu: {units: 8}
        memory: {size: 32Gi}
        storage:
          - size: 10Gi
          - name: data
            size: 100Gi
            attributes: {persistent: true, class: beta3}
          - name: shm
            size: 8Gi
            attributes: {class: ram, persistent: false}
        gpu:
          units: 2
          attributes:
            vendor:
              nvidia:
                - model: H100
                  ram: 80Gi
                  interface: sxm
                - model: 4000
                - model: a100
  placement:
    dc:
      pricing:
        llm: {denom: uact, amount: 100000}
deployment:
  llm:
    dc: {profile: llm, count: 1}
"#;
    let (s, d) = convert(text).unwrap();
    let r = &d.orders[0].groups[0].resources;
    assert_eq!(r.memory_bytes, (32u64 << 30) + (8 << 30), "ram volumes count as memory");
    assert_eq!(r.ephemeral_storage_bytes, 10 << 30);
    assert_eq!(r.persistent_storage.len(), 1);
    assert_eq!(
        (r.persistent_storage[0].name.as_str(), r.persistent_storage[0].class.as_str()),
        ("data", "beta3")
    );
    let gpu = r.gpu.as_ref().unwrap();
    assert_eq!((gpu.units, gpu.vendor.as_str()), (2, "nvidia"));
    let names: Vec<&str> = gpu.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["4000", "a100", "h100"]);
    assert_eq!(gpu.models[2].min_vram_bytes, 80 << 30);
    assert_eq!(gpu.models[2].interface, Some(GpuInterface::Sxm));
    assert!(
        s.warnings.iter().any(|w| w.message.contains("model written as a number") && w.line == 34),
        "{:?}",
        s.warnings
    );
    let mounts = &d.manifest.groups[0].services[0].mounts;
    assert_eq!(mounts[0].volume, "data");
    assert_eq!(mounts[0].kind, MountKind::Persistent);
    assert_eq!(
        (mounts[1].path.as_str(), mounts[1].kind),
        ("/dev/shm", MountKind::Ram { bytes: 8 << 30 })
    );
    assert_eq!(d.manifest.groups[0].services[0].gpu_units, 2);

    let any_model = text.replace(
        "              nvidia:\n                - model: H100\n                  ram: 80Gi\n                  interface: sxm\n                - model: 4000\n                - model: a100\n",
        "              nvidia:\n",
    );
    let (_, d) = convert(&any_model).unwrap();
    assert!(
        d.orders[0].groups[0].resources.gpu.as_ref().unwrap().models.is_empty(),
        "empty list = any model"
    );
}

#[test]
fn profile_without_ephemeral_storage_gets_the_implicit_root_fs() {
    let text = with(
        "          size: 1Gi\n",
        "          size: 1Gi\n          attributes: {persistent: true, class: beta2}\n",
    )
    .replace(
        "      - MODE=prod\n",
        "      - MODE=prod\n    params:\n      storage:\n        default: {mount: /data}\n",
    );
    let (_, d) = convert(&text).unwrap();
    let r = &d.orders[0].groups[0].resources;
    assert_eq!(r.ephemeral_storage_bytes, sdl::IMPLICIT_EPHEMERAL_BYTES);
    assert_eq!(r.persistent_storage[0].bytes, 1 << 30);
}

#[test]
fn manifest_limits_point_at_the_service() {
    let mut env = String::from("    env:\n");
    for i in 0..300 {
        env += &format!("      - V{i}=x\n");
    }
    let e = err(&with("    env:\n      - MODE=prod\n", &env));
    assert_err(&e, "invalid", "services.web", 3);
    assert!(e.to_string().contains("at most 256"), "{e}");
}
