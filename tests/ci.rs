//! CI runs exactly the README's test command.

#[test]
fn ci_runs_the_readme_test_command() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let command = "bash scripts/test";
    assert!(readme.contains(command), "README names the test command");
    assert!(ci.lines().any(|l| l.trim() == command), ".ci/run runs it");
    assert!(
        readme.contains("bash scripts/run"),
        "README names the main job"
    );
}
