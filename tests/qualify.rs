//! `zkmq qualify` end to end: the real binary, real Docker ensembles (3 nodes, one
//! at a time), a suite as small as can still say something: one short scenario on
//! 3.9.3 and on 3.9.6, a rolling upgrade and a rollback under load. The judgment
//! itself is unit-tested on hand-made runs (`report::qualify`); this proves the
//! runs happen, are ordinary run directories, and are read back into the verdict.
//!
//! Not 3.8.0: its own loss bugs (README, Known issues: leader kills, and a rollback
//! from 3.9.6 that lost messages) would make this test's verdict ZooKeeper's rather
//! than the harness's. Followers are killed, not leaders, for the same reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ZKMQ: &str = env!("CARGO_BIN_EXE_zkmq");

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// 3 nodes of 3.9.3, native workers, `faults` from 3 s on.
fn scenario(name: &str, faults: &str) -> String {
    format!(
        r#"name = "{name}"
duration = "15s"
[cluster]
nodes = 3
zk_version = "3.9.3"
[workload]
rate = 10
session_timeout = "4s"
op_timeout = "3s"
retry_budget = "10s"
[workload.native]
producers = 1
consumers = 1
[nemesis]
start_after = "3s"
interval = "6s"
fault_duration = "2s"
quiet = "2s"
{faults}
[final]
quorum_timeout = "60s"
drain_timeout = "30s"
"#
    )
}

/// The suite and its scenarios in `dir`; thresholds as loose as they go, so that
/// only a violation or a run that fails can fail it (one run a side says little
/// about unavailability, and the judging of figures has its unit tests).
fn write_suite(dir: &Path) -> PathBuf {
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "kills.toml",
        &scenario("kills", "[[nemesis.faults]]\nfault = \"kill\"\ntarget = \"leader\""),
    );
    write(
        "load.toml",
        &scenario(
            "load",
            "[[nemesis.faults]]\nfault = \"rolling-upgrade\"\nto_version = \"3.9.6\"",
        ),
    );
    write(
        "suite.toml",
        r#"name = "tiny"
runs = 1
scenarios = ["kills.toml"]
[baseline]
version = "3.9.3"
[candidate]
version = "3.9.6"
[upgrade]
scenario = "load.toml"
[thresholds]
unavailability_factor = 100
unavailability_slack = "1m"
throughput_share = 0.01
rollback_required = true
"#,
    );
    dir.join("suite.toml")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_tiny_suite_qualifies_with_every_run_a_run_directory_and_a_test_case_per_check() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path());
    let out = dir.path().join("out");
    let output = Command::new(ZKMQ)
        .args(["qualify", suite.to_str().unwrap(), "--seed", "11", "--out", out.to_str().unwrap()])
        .env("RUST_LOG", "warn,zookeeper_client=error")
        .output()
        .expect("the zkmq binary runs");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("=== run 1 of 4: kills on 3.9.3 (baseline) #1, seed "), "{said}");
    assert!(said.contains("left)"), "progress says the time left: {said}");
    assert!(
        said.contains("QUALIFIED: ZooKeeper 3.9.6 against 3.9.3, 7 of 7 checks passed"),
        "{said}"
    );

    let qualification = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    for file in ["qualify.html", "qualify.md", "qualify.json", "junit.xml", "suite.toml"] {
        assert!(qualification.join(file).is_file(), "{file} in {}", qualification.display());
    }
    let q = json(&qualification.join("qualify.json"));
    assert_eq!(q["verdict"], "qualified");
    let runs = q["runs"].as_array().unwrap();
    let labels: Vec<(&str, &str)> =
        runs.iter().map(|r| (r["group"].as_str().unwrap(), r["role"].as_str().unwrap())).collect();
    assert_eq!(
        labels,
        [
            ("kills", "baseline"),
            ("kills", "candidate"),
            ("upgrade", "upgrade"),
            ("downgrade", "downgrade")
        ]
    );
    assert_eq!(runs[0]["seed"], runs[1]["seed"], "the pair faced the same faults");
    for run in runs {
        assert_eq!(run["status"], "valid", "{run}");
        // An ordinary run directory inside the qualification's, as it named it.
        let run_dir = qualification.join(run["dir"].as_str().unwrap());
        let results = json(&run_dir.join("results.json"));
        assert_eq!(results["valid"], true);
        assert_eq!(results["run"]["seed"], run["seed"]);
        let started_on = run["version"].as_str().unwrap();
        assert_eq!(
            results["run"]["zk_version"], started_on,
            "the scenario was moved to its version"
        );
        assert!(
            run["repeat"].as_str().unwrap().contains(&format!("--seed {}", run["seed"])),
            "{run}"
        );
    }
    for (run, to) in [(&runs[2], "3.9.6"), (&runs[3], "3.9.3")] {
        assert_eq!(run["to_version"], to);
        assert_eq!(run["rolling"]["completed"], true, "every node moved to {to}: {run}");
    }
    let junit = std::fs::read_to_string(qualification.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("junit.xml is well-formed XML");
    let cases: Vec<(&str, &str)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| (n.attribute("classname").unwrap(), n.attribute("name").unwrap()))
        .collect();
    assert!(cases.contains(&("qualify.scenarios", "kills on 3.9.3 (baseline)")), "{cases:?}");
    assert!(cases.contains(&("qualify.scenarios", "kills on 3.9.6 (candidate)")), "{cases:?}");
    assert!(
        cases.contains(&("qualify.upgrade", "rollback (rolling downgrade) 3.9.6 → 3.9.3")),
        "{cases:?}"
    );
    assert_eq!(
        cases.iter().filter(|(kind, _)| *kind == "qualify.thresholds").count(),
        3,
        "{cases:?}"
    );
    assert_eq!(cases.len(), 7);
}

#[test]
fn a_bad_suite_exits_2_naming_the_key_and_its_line_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path());
    let original = std::fs::read_to_string(&suite).unwrap();
    std::fs::write(
        &suite,
        original
            .replace("throughput_share = 0.01", "throughput_share = 0.01\nthroughput_floor = 1"),
    )
    .unwrap();
    let output = Command::new(ZKMQ)
        .args([
            "qualify",
            suite.to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("suite.toml:14: unknown key `throughput_floor` in [thresholds]"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists(), "nothing was started");
}
