//! End-to-end: `/metrics` after real scans and chat questions, parsed by the reference OpenMetrics
//! parser (the `prometheus_client` Python package, which `.ci/run` installs).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// (metric family name, sample name, labels, value) of every sample, as the reference parser reads
/// the exposition. A malformed exposition fails the parse and the test.
fn parse_openmetrics(text: &str) -> Vec<(String, String, HashMap<String, String>, f64)> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference parser rejects the exposition (is prometheus_client installed?): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(
    samples: &[(String, String, HashMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(_, n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, _, v)| v)
        .sum()
}

#[test]
fn metrics_count_scans_chat_and_the_index_and_parse_as_openmetrics() {
    let app = spawn_app();
    for _ in 0..3 {
        assert_eq!(get(&app.url("/c/tJ6bpUpB"), &[]).status, 200);
    }
    assert_eq!(get(&app.url("/c/ZZZZZZZZ"), &[]).status, 404);
    // A link preview is not a scan.
    get(
        &app.url("/c/tJ6bpUpB"),
        &[("user-agent", "Slackbot-LinkExpanding 1.0")],
    );
    let asked = post_json(
        &app.url("/api/chat"),
        &[],
        r#"{"code": "tJ6bpUpB", "message": "what does E-204 mean on the pump?"}"#,
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let person = post_json(
        &app.url("/api/chat"),
        &[],
        r#"{"code": "tJ6bpUpB", "message": "talk to a person"}"#,
    );
    assert_eq!(person.status, 200, "{}", person.body);
    app.flush_events();

    let reply = get(&app.url("/metrics"), &[]);
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let samples = parse_openmetrics(&reply.body);

    assert_eq!(
        value(
            &samples,
            "scanaid_scans_total",
            &[("outcome", "page"), ("role", "anonymous")]
        ),
        3.0
    );
    assert_eq!(
        value(&samples, "scanaid_scans_total", &[("outcome", "fallback")]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "scanaid_scan_duration_seconds_count",
            &[("outcome", "page")]
        ),
        3.0
    );
    assert_eq!(
        value(&samples, "scanaid_chat_turns_total", &[("scope", "asset")]),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "scanaid_chat_turns_total",
            &[("outcome", "person")]
        ),
        1.0
    );
    assert!(
        value(
            &samples,
            "scanaid_escalations_total",
            &[("reason", "asked")]
        ) >= 1.0
    );
    let generation = app.state.index().generation.clone();
    assert_eq!(
        value(&samples, "scanaid_index_generation", &[]),
        generation[1..].parse::<f64>().unwrap()
    );
    assert_eq!(
        value(&samples, "scanaid_index_chunks", &[]),
        app.state.index().len() as f64
    );
    assert_eq!(
        value(&samples, "scanaid_scan_events_written_total", &[]),
        4.0
    );
    assert_eq!(
        value(&samples, "scanaid_scan_events_dropped_total", &[]),
        0.0
    );

    // Nothing personal or identifying in any label: no code, no question text.
    assert!(!reply.body.contains("tJ6bpUpB"));
    assert!(!reply.body.contains("E-204"));
}
