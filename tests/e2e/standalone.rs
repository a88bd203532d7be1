//! The repository stands alone: `scripts/check-standalone.sh` (run by `.ci/run`) refuses a tree
//! that points outside itself, and test servers never inherit a developer's `TRAILKEEP_*`
//! variables.

use std::path::Path;
use std::process::Command;

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-standalone.sh");

/// A git repository in a temp dir holding `files` (path, content), all added.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git")
            .status
            .success();
        assert!(ok, "git {args:?} failed");
    };
    git(&["init", "-q"]);
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    git(&["add", "-A"]);
    dir
}

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg(CHECK)
        .arg(dir)
        .output()
        .expect("run check-standalone.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn this_repository_stands_alone() {
    let (ok, err) = check(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(ok, "{err}");
}

#[test]
fn a_clean_tree_passes_the_check() {
    let dir = repo(&[
        (
            "README.md",
            "See [the docs](docs/api.md) and <https://example.com>.\n",
        ),
        (
            "docs/api.md",
            "# API\nBack to [the README](../README.md#top).\n",
        ),
        ("src/main.rs", "fn main() { let _ = \"/tmp/x\"; }\n"),
    ]);
    let (ok, err) = check(dir.path());
    assert!(ok, "{err}");
}

#[test]
fn references_outside_the_repository_are_refused() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "scripts/gen.sh",
            concat!("python3 ..", "/shared/tools/gen.py\n"),
            concat!("..", "/shared"),
        ),
        ("src/lib.rs", "// see SPEC.md\n", "SPEC.md"),
        ("src/api.rs", "/// Errors (SPEC §3).\n", "SPEC §3"),
        (
            "tests/t.rs",
            concat!("let p = \"/", "work/shared/testdata\";\n"),
            concat!("/", "work/"),
        ),
        ("bench/x.sh", "cd /home/dev/trailkeep\n", "/home/"),
        ("README.md", "Read [the spec](../SPEC.md).\n", "SPEC.md"),
        ("docs/a.md", "See [b](b.md).\n", "missing file"),
        (
            "docs/c.md",
            "See [c](../../outside.md).\n",
            "leaves the repository",
        ),
    ];
    for (path, content, what) in cases {
        let dir = repo(&[("README.md", "# ok\n"), (path, content)]);
        let (ok, err) = check(dir.path());
        assert!(!ok, "{path} with {content:?} passed the check");
        assert!(
            err.contains(path) && err.contains(what),
            "the refusal names {path} and {what}: {err}"
        );
    }
}

/// A developer's shell may hold `TRAILKEEP_*` variables (a client key, an unknown variable that
/// `serve` refuses, a listen address): the tests run the same with them. This test runs two
/// tests of this binary again in a child process with such variables set.
#[test]
fn tests_do_not_inherit_the_developers_trailkeep_variables() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "cli::key_create_prints_only_the_key_and_it_works_while_the_server_runs",
            "cli::ingest_query_and_tail",
            "--test-threads",
            "1",
        ])
        .env("TRAILKEEP_SHARED", "/nonexistent/shared")
        .env("TRAILKEEP_LISTEN", "not-an-address")
        .env("TRAILKEEP_KEY", "not-a-key")
        .env("TRAILKEEP_URL", "http://127.0.0.1:9")
        .env("TRAILKEEP_DATA_DIR", "/nonexistent/data")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("2 passed"),
        "with TRAILKEEP_* variables set, the tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
