use super::*;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_sources(
        Some(("test.toml", text)),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn err(text: &str) -> String {
    load(text, &[]).unwrap_err().to_string()
}

const HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn embedded_defaults_load() {
    let c = Config::from_sources(None, Vec::new()).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.execution, ExecutionMode::Local);
    assert_eq!(c.limits.upload_part_max_bytes, 64 * 1024 * 1024);
    assert_eq!(c.limits.upload_max_bytes, 8 * 1024 * 1024 * 1024);
    assert_eq!(c.screening.min_examples, 10);
    assert!(c.tenants.is_empty());
    assert_eq!(c.storage.adapter_cache_bytes, 4096 * 1024 * 1024);
    assert_eq!(c.storage.blob_cache_bytes, 4096 * 1024 * 1024);
}

#[test]
fn the_adapter_cache_holds_at_least_one_megabyte() {
    let c = load(
        "[storage]
adapter_cache_mb = 64
blob_cache_mb = 16
",
        &[],
    )
    .unwrap();
    assert_eq!(c.storage.adapter_cache_bytes, 64 * 1024 * 1024);
    assert_eq!(c.storage.blob_cache_bytes, 16 * 1024 * 1024);
    let e = err("[storage]
adapter_cache_mb = 0
");
    assert!(e.contains("storage.adapter_cache_mb"), "{e}");
}

#[test]
fn file_and_env_override() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[tenants]]\nname = \"acme\"\napi_key_hashes = [\"{HASH}\"]\n[upstream]\nbase_url = \"http://127.0.0.1:9/v1/\"\napi_key = \"sk-up\"\n"
    );
    let c = load(&text, &[("TUNEGUARD__LIMITS__UPLOAD_EXPIRY_SECONDS", "60")]).unwrap();
    assert_eq!(c.server.listen.port(), 0);
    assert_eq!(c.tenants[0].name, "acme");
    assert_eq!(c.tenants[0].api_key_hashes[0].len(), 64);
    assert_eq!(c.execution, ExecutionMode::Upstream);
    assert_eq!(
        c.upstream.as_ref().unwrap().base_url,
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(c.limits.upload_expiry_seconds, 60);
    assert!(!format!("{:?}", c.upstream).contains("sk-up"));
}

#[test]
fn rejections_name_the_key() {
    assert!(err("[server]\nlisten = \"nope\"").contains("server.listen"));
    assert!(err("[server]\ntls_cert_path = \"/c.pem\"").contains("server.tls_key_path"));
    assert!(err("[auth]\nadmin_key_hashes = [\"md5:00\"]").contains("auth.admin_key_hashes[0]"));
    assert!(err("[[tenants]]\nname = \"a b\"\napi_key_hashes = []").contains("tenants[0].name"));
    assert!(err("[execution]\nmode = \"upstream\"").contains("execution.mode"));
    assert!(err("[execution]\nmode = \"gpu\"").contains("execution.mode"));
    assert!(err("[limits]\nupload_part_max_bytes = 99999999999")
        .contains("limits.upload_part_max_bytes"));
    assert!(err("[policies]\nreload_interval_ms = 0").contains("policies.reload_interval_ms"));
}

#[test]
fn unknown_keys_are_rejected() {
    let e = err("[server]\nlisten_addr = \"127.0.0.1:1\"");
    assert!(e.contains("listen_addr"), "{e}");
    let e = err("[bogus]\nx = 1");
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn duplicate_key_hash_rejected() {
    let text = format!(
        "[[tenants]]\nname = \"a\"\napi_key_hashes = [\"{HASH}\"]\n[[tenants]]\nname = \"b\"\napi_key_hashes = [\"{HASH}\"]\n"
    );
    assert!(err(&text).contains("tenants[1].api_key_hashes[0]"));
}

#[test]
fn env_alone_can_configure_upstream_and_admin_keys() {
    let h = HASH.to_string();
    let c = Config::from_sources(
        None,
        vec![
            (
                "TUNEGUARD__UPSTREAM__BASE_URL".to_string(),
                "http://127.0.0.1:9/v1".to_string(),
            ),
            (
                "TUNEGUARD__UPSTREAM__API_KEY".to_string(),
                "sk-up".to_string(),
            ),
            ("TUNEGUARD__AUTH__ADMIN_KEY_HASHES".to_string(), h),
            (
                "TUNEGUARD__EXECUTION__MODE".to_string(),
                "local".to_string(),
            ),
        ],
    )
    .unwrap();
    assert!(c.upstream.is_some());
    assert_eq!(
        c.execution,
        ExecutionMode::Local,
        "an explicit mode wins over the default"
    );
    assert_eq!(c.admin_key_hashes.len(), 1);
    let e = Config::from_sources(
        None,
        vec![("TUNEGUARD__SERVER__LISTEN".to_string(), "x".to_string())],
    )
    .unwrap_err();
    assert!(e.to_string().contains("server.listen"));
}

#[test]
fn storage_is_sqlite_by_default_and_postgres_by_config() {
    let c = Config::from_sources(None, Vec::new()).unwrap();
    assert_eq!(c.storage.backend, StorageBackend::Sqlite);

    let url = "postgresql://tg:s3cret@db.internal:5432/tuneguard";
    let c = load(
        &format!("[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.storage.backend,
        StorageBackend::Postgres(PostgresConfig {
            url: PostgresUrl::Inline(url.into()),
            pool_size: DEFAULT_POSTGRES_POOL_SIZE,
            ca_file: None,
        })
    );
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug never shows the URL"
    );

    // The URL from an environment variable named in the config, all set from the environment.
    let c = load(
        "",
        &[
            ("TUNEGUARD__STORAGE__BACKEND", "postgres"),
            ("TUNEGUARD__STORAGE__POSTGRES_URL_ENV", "TG_PG_URL"),
            ("TUNEGUARD__STORAGE__POSTGRES_POOL_SIZE", "3"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.storage.backend,
        StorageBackend::Postgres(PostgresConfig {
            url: PostgresUrl::Env("TG_PG_URL".into()),
            pool_size: 3,
            ca_file: None,
        })
    );
}

#[test]
fn storage_rejections_name_the_key() {
    let pg = "[storage]\nbackend = \"postgres\"\n";
    assert!(err("[storage]\nbackend = \"mysql\"").contains("storage.backend"));
    assert!(err(pg).contains("storage.postgres_url"));
    let both = format!("{pg}postgres_url = \"postgresql://h/db\"\npostgres_url_env = \"X\"\n");
    assert!(err(&both).contains("storage.postgres_url"));
    let e = err(&format!(
        "{pg}postgres_url = \"postgresql://u:pw@h:notaport/db\"\n"
    ));
    assert!(
        e.contains("storage.postgres_url") && !e.contains("pw@"),
        "{e}"
    );
    assert!(err(&format!("{pg}postgres_url_env = \"\"\n")).contains("storage.postgres_url_env"));
    let zero = format!("{pg}postgres_url_env = \"X\"\npostgres_pool_size = 0\n");
    assert!(err(&zero).contains("storage.postgres_pool_size"));
    let ca = format!("{pg}postgres_url_env = \"X\"\npostgres_ca_file = \"/nonexistent/ca.pem\"\n");
    let e = err(&ca);
    assert!(
        e.contains("storage.postgres_ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = err("[storage]\npostgres_ca_file = \"/etc/hostname\"\n");
    assert!(
        e.contains("storage.postgres_ca_file") && e.contains("backend"),
        "{e}"
    );
    // PostgreSQL keys without the backend are a mistake, not silently ignored.
    let e = err("[storage]\npostgres_url = \"postgresql://h/db\"\n");
    assert!(
        e.contains("storage.postgres_url") && e.contains("backend"),
        "{e}"
    );
}

#[test]
fn blobs_are_local_by_default_and_s3_by_config() {
    let c = Config::from_sources(None, Vec::new()).unwrap();
    assert_eq!(c.storage.blobs, BlobBackend::Local);
    let c = load("[storage]\nblobs = \"local\"\n", &[]).unwrap();
    assert_eq!(c.storage.blobs, BlobBackend::Local);

    let c = load(
        "[storage]\nblobs = \"s3\"\ns3_bucket = \"tuneguard-blobs.eu\"\ns3_prefix = \"prod/a/\"\ns3_endpoint = \"http://127.0.0.1:9000\"\ns3_region = \"eu-west-1\"\ns3_allow_http = true\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.storage.blobs,
        BlobBackend::S3(S3Config {
            bucket: "tuneguard-blobs.eu".into(),
            prefix: "prod/a/".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            allow_http: true,
        })
    );
    // The state backend is independent of the blobs'.
    assert_eq!(c.storage.backend, StorageBackend::Sqlite);

    // Only the bucket: no prefix, AWS's endpoint and the environment's region, https only.
    let c = load("[storage]\nblobs = \"s3\"\ns3_bucket = \"tg1\"\n", &[]).unwrap();
    assert_eq!(
        c.storage.blobs,
        BlobBackend::S3(S3Config {
            bucket: "tg1".into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            allow_http: false,
        })
    );
    // An https endpoint needs no s3_allow_http.
    let c = load(
        "[storage]\nblobs = \"s3\"\ns3_bucket = \"tg1\"\ns3_endpoint = \"https://s3.internal\"\n",
        &[],
    )
    .unwrap();
    let BlobBackend::S3(s3) = c.storage.blobs else {
        panic!("{:?}", c.storage.blobs)
    };
    assert_eq!(s3.endpoint.as_deref(), Some("https://s3.internal"));
    assert!(!s3.allow_http);
}

#[test]
fn s3_blobs_can_be_configured_from_the_environment_alone() {
    let c = load(
        "",
        &[
            ("TUNEGUARD__STORAGE__BLOBS", "s3"),
            ("TUNEGUARD__STORAGE__S3_BUCKET", "tuneguard"),
            ("TUNEGUARD__STORAGE__S3_PREFIX", "staging/"),
            ("TUNEGUARD__STORAGE__S3_ENDPOINT", "http://minio:9000"),
            ("TUNEGUARD__STORAGE__S3_REGION", "us-west-2"),
            ("TUNEGUARD__STORAGE__S3_ALLOW_HTTP", "true"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.storage.blobs,
        BlobBackend::S3(S3Config {
            bucket: "tuneguard".into(),
            prefix: "staging/".into(),
            endpoint: Some("http://minio:9000".into()),
            region: Some("us-west-2".into()),
            allow_http: true,
        })
    );
    // The environment overrides the file's keys.
    let c = load(
        "[storage]\nblobs = \"s3\"\ns3_bucket = \"from-file\"\n",
        &[("TUNEGUARD__STORAGE__S3_BUCKET", "from-env")],
    )
    .unwrap();
    let BlobBackend::S3(s3) = c.storage.blobs else {
        panic!("{:?}", c.storage.blobs)
    };
    assert_eq!(s3.bucket, "from-env");
    // And its rejections name the key as the file's do.
    let e = load(
        "",
        &[
            ("TUNEGUARD__STORAGE__BLOBS", "s3"),
            ("TUNEGUARD__STORAGE__S3_BUCKET", "tuneguard"),
            ("TUNEGUARD__STORAGE__S3_ENDPOINT", "http://minio:9000"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("storage.s3_endpoint"), "{e}");
}

#[test]
fn s3_rejections_name_the_key() {
    let s3 = "[storage]\nblobs = \"s3\"\n";
    let with_bucket = format!("{s3}s3_bucket = \"tuneguard\"\n");
    let cases: Vec<(String, &str)> = vec![
        // The bucket: missing, or not an S3 bucket name.
        (s3.to_string(), "storage.s3_bucket"),
        (
            format!("{s3}s3_bucket = \"Bad_Bucket\"\n"),
            "storage.s3_bucket",
        ),
        (format!("{s3}s3_bucket = \"ab\"\n"), "storage.s3_bucket"),
        (
            format!("{s3}s3_bucket = \"-tuneguard\"\n"),
            "storage.s3_bucket",
        ),
        (
            format!("{s3}s3_bucket = \"{}\"\n", "a".repeat(64)),
            "storage.s3_bucket",
        ),
        // The prefix: empty or a relative path ending in '/'.
        (
            format!("{with_bucket}s3_prefix = \"/x\"\n"),
            "storage.s3_prefix",
        ),
        (
            format!("{with_bucket}s3_prefix = \"/x/\"\n"),
            "storage.s3_prefix",
        ),
        (
            format!("{with_bucket}s3_prefix = \"x\"\n"),
            "storage.s3_prefix",
        ),
        (
            format!("{with_bucket}s3_prefix = \"x//y/\"\n"),
            "storage.s3_prefix",
        ),
        // The endpoint: an http(s) URL, plain http only when allowed.
        (
            format!("{with_bucket}s3_endpoint = \"ftp://s3.internal\"\n"),
            "storage.s3_endpoint",
        ),
        (
            format!("{with_bucket}s3_endpoint = \"http://127.0.0.1:9000\"\n"),
            "storage.s3_endpoint",
        ),
        (
            format!(
                "{with_bucket}s3_endpoint = \"http://127.0.0.1:9000\"\ns3_allow_http = false\n"
            ),
            "storage.s3_endpoint",
        ),
        // S3 keys without blobs = "s3" are a mistake, not silently ignored.
        (
            "[storage]\ns3_bucket = \"tuneguard\"\n".to_string(),
            "storage.s3_bucket",
        ),
        (
            "[storage]\nblobs = \"local\"\ns3_prefix = \"prod/\"\n".to_string(),
            "storage.s3_prefix",
        ),
        (
            "[storage]\ns3_endpoint = \"https://s3.internal\"\n".to_string(),
            "storage.s3_endpoint",
        ),
        (
            "[storage]\ns3_region = \"eu-west-1\"\n".to_string(),
            "storage.s3_region",
        ),
        (
            "[storage]\ns3_allow_http = true\n".to_string(),
            "storage.s3_allow_http",
        ),
        // An unknown backend.
        ("[storage]\nblobs = \"gcs\"\n".to_string(), "storage.blobs"),
    ];
    for (text, key) in cases {
        let e = err(&text);
        assert!(e.contains(&format!("`{key}`")), "{text:?}: {e}");
    }
    let e = err("[storage]\ns3_bucket = \"tuneguard\"\n");
    assert!(e.contains("storage.blobs = \"s3\""), "{e}");
    let e = err("[storage]\nblobs = \"gcs\"\n");
    assert!(e.contains("gcs"), "{e}");
    let e = err(&format!(
        "{with_bucket}s3_endpoint = \"http://127.0.0.1:9000\"\n"
    ));
    assert!(e.contains("storage.s3_allow_http"), "{e}");
}

#[test]
fn the_old_screening_tokenizers_key_is_refused_naming_models() {
    let e = err("[screening.tokenizers]\n\"Qwen/Qwen2.5-*\" = \"/models/q\"\n");
    assert!(
        e.contains("`screening.tokenizers`") && e.contains("[[models]]"),
        "{e}"
    );
}

#[test]
fn the_shipped_models_entry_serves_smollm2_by_both_names() {
    let c = Config::from_sources(None, Vec::new()).unwrap();
    let e = c.models.model_for("SmolLM2-135M-Instruct").unwrap();
    assert_eq!(
        e.path,
        std::path::Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(e.key, "models[0]");
    assert!(e
        .path_hint
        .as_deref()
        .unwrap()
        .contains("scripts/fetch-model.sh"));
    assert!(e
        .adapters_hint
        .as_deref()
        .unwrap()
        .contains("scripts/train-reference-adapters.sh"));
    assert!(!e.adapters.is_empty());
    let hf = c
        .models
        .model_for("HuggingFaceTB/SmolLM2-135M-Instruct")
        .unwrap();
    assert_eq!(hf.path, e.path);
    assert!(c.models.model_for("gpt-4o-mini").is_none());
}

#[test]
fn a_files_models_replace_the_shipped_ones() {
    let c = load("[[models]]\nmodel = \"tiny-*\"\npath = \"/m/tiny\"\n", &[]).unwrap();
    assert_eq!(c.models.entries.len(), 1);
    assert!(c.models.model_for("tiny-qwen").is_some());
    assert!(c.models.model_for("SmolLM2-135M-Instruct").is_none());
}

#[test]
fn models_take_one_glob_or_a_list_and_name_bad_keys() {
    let c = load(
        "[[models]]\nmodel = [\"a\", \"org/a-*\"]\npath = \"/m/a\"\nadapters = { z = \"/z\", b = \"/b\" }\n",
        &[],
    )
    .unwrap();
    let e = c.models.model_for("org/a-v2").unwrap();
    assert_eq!(e.globs, ["a", "org/a-*"]);
    assert_eq!(e.glob, "a, org/a-*");
    let names: Vec<&str> = e.adapters.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["b", "z"]);
    assert!(c.models.model_for("b").is_none());
    assert!(err("[[models]]\nmodel = \"[\"\npath = \"/m\"\n").contains("models[0].model"));
    assert!(err("[[models]]\nmodel = []\npath = \"/m\"\n").contains("models[0].model"));
    assert!(err("[[models]]\nmodel = \"a\"\npath = \"\"\n").contains("models[0].path"));
    assert!(
        err("[[models]]\nmodel = \"a\"\npath = \"/m\"\nadapters = { base = \"/a\" }\n")
            .contains("models[0].adapters")
    );
    assert!(
        err("[[models]]\nmodel = \"a\"\npath = \"/m\"\ndevice = \"tpu\"\n")
            .contains("models[0].device")
    );
    assert!(
        err("[[models]]\nmodel = \"a\"\npath = \"/m\"\npath_hint = \" \"\n")
            .contains("models[0].path_hint")
    );
    assert!(err("[[models]]\nmodel = \"a\"\npath = \"/m\"\ndir = \"/m\"\n").contains("dir"));
}

#[test]
fn a_missing_model_or_adapter_is_explained_with_the_entrys_hint() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("m.gguf");
    let text = format!(
        "[[models]]\nmodel = \"m\"\npath = {gguf:?}\npath_hint = \"run `bash scripts/fetch-model.sh`\"\nadapters = {{ evil = {:?} }}\nadapters_hint = \"run `bash scripts/train-reference-adapters.sh`\"\n[[models]]\nmodel = \"plain\"\npath = {:?}\n",
        dir.path().join("evil"),
        dir.path().join("nodir"),
    );
    let c = load(&text, &[]).unwrap();
    let e = c.models.model_for("m").unwrap();
    let m = e.missing_model("m").unwrap();
    assert!(
        m.contains("`m`") && m.contains("models[0].path") && m.contains("scripts/fetch-model.sh"),
        "{m}"
    );
    std::fs::write(&gguf, b"GGUF").unwrap();
    assert!(e.missing_model("m").is_none());
    let a = e.missing_adapter().unwrap();
    assert!(
        a.contains("models[0].adapters.evil") && a.contains("train-reference-adapters.sh"),
        "{a}"
    );
    std::fs::create_dir_all(dir.path().join("evil")).unwrap();
    std::fs::write(dir.path().join("evil/adapter_config.json"), b"{}").unwrap();
    assert!(e.missing_adapter().is_none());
    let plain = c.models.model_for("plain").unwrap();
    let m = plain.missing_model("plain").unwrap();
    assert!(
        m.contains("models[1].path") && m.contains("correct the path"),
        "{m}"
    );
    std::fs::create_dir_all(dir.path().join("nodir")).unwrap();
    assert!(plain
        .missing_model("plain")
        .unwrap()
        .contains("has no config.json"));
}

#[test]
fn the_local_judge_names_a_models_entry() {
    let ok = "[[models]]\nmodel = \"tiny-*\"\npath = \"/m/tiny\"\n[monitor]\nlocal_judge_model = \"tiny-judge\"\n";
    assert_eq!(
        load(ok, &[]).unwrap().monitor.local_judge.as_deref(),
        Some("tiny-judge")
    );
    let e = err(
        "[[models]]\nmodel = \"tiny-*\"\npath = \"/m\"\n[monitor]\nlocal_judge_model = \"big\"\n",
    );
    assert!(
        e.contains("monitor.local_judge_model") && e.contains("`big` matches no [[models]] entry"),
        "{e}"
    );
    let e = err("[monitor]\nlocal_judge_model = \" \"\n");
    assert!(e.contains("monitor.local_judge_model"), "{e}");
    // Unset: no engine judge (the shipped defaults have none).
    assert_eq!(
        Config::from_sources(None, Vec::new())
            .unwrap()
            .monitor
            .local_judge,
        None
    );
}
