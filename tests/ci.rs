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

/// The README's project layout names every source file, so a newcomer's map stays true; and
/// lib.rs's module list documents every module it declares.
#[test]
fn the_layout_lists_every_source_file_and_lib_rs_every_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layout = readme
        .split("## Project layout")
        .nth(1)
        .expect("README has a Project layout section");
    let layout = layout.split("\n## ").next().unwrap();
    let mut missing = Vec::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let parent = path.parent().unwrap().strip_prefix(root).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // A top-level file by its path; a file in a module directory by its name under
            // the directory's entry.
            let listed = if parent == std::path::Path::new("src") {
                layout.contains(&relative)
            } else {
                layout.contains(&format!("{}/", parent.display())) && layout.contains(&name)
            };
            if !listed {
                missing.push(relative);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's Project layout does not name {missing:?}"
    );

    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    for module in lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
    {
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "src/lib.rs declares {module} but its module list does not describe it"
        );
    }
}

/// Every relative link in the README, docs/ and ARCHITECTURE.md names a file that exists.
#[test]
fn relative_links_in_the_documentation_resolve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(entry.unwrap().path());
    }
    let link = regex::Regex::new(r"\]\(([^)#\s]+)(#[^)]*)?\)").unwrap();
    let mut broken = Vec::new();
    for page in pages
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(page).unwrap();
        for captures in link.captures_iter(&text) {
            let target = &captures[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !page.parent().unwrap().join(target).exists() {
                broken.push(format!(
                    "{}: {target}",
                    page.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}
