//! The dependency table of the development guide (`docs/development.md`,
//! "Dependencies") names every dependency the workspace declares, each with
//! the reason kiln needs it: a crate added to `[workspace.dependencies]`
//! without a row fails here.

use std::collections::BTreeSet;

use kiln_tests::workspace_root;

const GUIDE: &str = "docs/development.md";

/// The external crates of `[workspace.dependencies]` (the workspace's own
/// crates, declared by `path`, are not dependencies to explain).
fn workspace_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_section = false;
    let mut names = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.dependencies]";
            continue;
        }
        if !in_section || line.starts_with('#') {
            continue;
        }
        if let Some((name, spec)) = line.split_once('=')
            && !spec.contains("path =")
        {
            names.insert(name.trim().to_string());
        }
    }
    names
}

/// The rows of the table under `## Dependencies`: (crates named in the first
/// cell, the reason in the second).
fn table_rows(guide: &str) -> Vec<(Vec<String>, String)> {
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("Dependencies"))
        .unwrap_or_else(|| panic!("{GUIDE} has no \"## Dependencies\" section"));
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| crate"))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let crates = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (crates, cells.get(1).unwrap_or(&"").to_string())
        })
        .collect()
}

#[test]
fn every_workspace_dependency_has_a_row_with_its_reason() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let guide = std::fs::read_to_string(root.join(GUIDE)).unwrap();
    let declared = workspace_dependencies(&manifest);
    assert!(declared.len() > 20, "parsed {declared:?}");
    let rows = table_rows(&guide);
    for (crates, reason) in &rows {
        assert!(
            reason.len() >= 10,
            "{GUIDE}: the row for {crates:?} gives no reason"
        );
    }
    let named: BTreeSet<String> = rows.into_iter().flat_map(|(c, _)| c).collect();
    let missing: Vec<&String> = declared.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "{GUIDE}'s dependency table lacks {missing:?}: add a row saying why kiln needs each"
    );
}

#[test]
fn the_parsers_see_what_they_should() {
    let manifest = "[workspace]\nmembers = []\n[workspace.dependencies]\nkiln = { path = \"shared\" }\n# comment\ntokio = { version = \"1\" }\nhex = \"0.4\"\n[profile.release]\nlto = true\n";
    assert_eq!(
        workspace_dependencies(manifest),
        BTreeSet::from(["hex".to_string(), "tokio".to_string()])
    );
    let guide = "# x\n## Dependencies\n\n| crate | why |\n|---|---|\n| `hmac`, `sha2` | signatures |\n| `reqwest` (rustls) | HTTP |\n\n## Next\n| `not` | here |\n";
    let rows = table_rows(guide);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, ["hmac", "sha2"]);
    assert_eq!(rows[1].0, ["reqwest"]);
}
