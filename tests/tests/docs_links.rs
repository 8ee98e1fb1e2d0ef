//! Every relative link and anchor in `README.md` and `docs/` resolves.
//!
//! Links are read with a CommonMark parser (`pulldown-cmark`), so links in
//! code blocks and code spans are not links, and reference-style links are.
//! A link to another page must name a file or directory that exists; an
//! anchor (`#...`, on this page or another Markdown page) must be the
//! anchor GitHub gives one of that page's headings. Links with a scheme
//! (`https:`, `mailto:`) are not checked: the tests make no network calls.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// A link found in a page: where it points, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    target: String,
    line: usize,
}

/// What a page offers and asks for.
#[derive(Debug, Default)]
struct Page {
    anchors: HashSet<String>,
    links: Vec<Link>,
}

/// What GitHub's Markdown adds to CommonMark.
fn gfm() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM
}

fn parse(text: &str) -> Page {
    let mut page = Page::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    for (event, range) in Parser::new_ext(text, gfm()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                heading = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    let base = github_slug(&text);
                    let n = seen.entry(base.clone()).or_insert(0);
                    let anchor = if *n == 0 { base } else { format!("{base}-{n}") };
                    *n += 1;
                    page.anchors.insert(anchor);
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => {
                page.links.push(Link {
                    target: dest_url.to_string(),
                    line: line_of(range.start),
                });
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                // `<a id="...">` or `<a name="...">` anchors.
                for attr in ["id=\"", "name=\""] {
                    let mut rest = html.as_ref();
                    while let Some(at) = rest.find(attr) {
                        rest = &rest[at + attr.len()..];
                        if let Some(end) = rest.find('"') {
                            page.anchors.insert(rest[..end].to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    page
}

/// The anchor GitHub gives a heading: lower case, only letters, digits,
/// `_`, `-` and spaces kept, spaces turned into `-`.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn has_scheme(target: &str) -> bool {
    match target.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !scheme.contains('/')
        }
        None => false,
    }
}

/// `a/b/../c` as `a/c`, without touching the file system; a path that
/// climbs above its start keeps its leading `..`.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if out.as_os_str().is_empty() || out.ends_with("..") {
                    out.push("..");
                } else {
                    out.pop();
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Checks every link of `pages` (paths relative to `root`, with their
/// text); `exists` says whether a relative path names a file or directory.
/// Returns one line per broken link.
fn broken_links(pages: &BTreeMap<PathBuf, String>, exists: impl Fn(&Path) -> bool) -> Vec<String> {
    let parsed: BTreeMap<&PathBuf, Page> = pages.iter().map(|(p, t)| (p, parse(t))).collect();
    let mut problems = Vec::new();
    for (path, page) in &parsed {
        for link in &page.links {
            if has_scheme(&link.target) || link.target.starts_with("//") {
                continue;
            }
            let (file, anchor) = match link.target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (link.target.as_str(), None),
            };
            let where_ = format!("{}:{}: {}", path.display(), link.line, link.target);
            let target = if file.is_empty() {
                (*path).clone()
            } else {
                let dir = path.parent().unwrap_or(Path::new(""));
                normalise(&dir.join(file))
            };
            if target.as_os_str().is_empty() || target.starts_with("..") {
                problems.push(format!("{where_}: points outside the repository"));
                continue;
            }
            if !exists(&target) {
                problems.push(format!("{where_}: {} does not exist", target.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if target.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let anchors = match parsed.get(&target) {
                Some(page) => page.anchors.clone(),
                None => match pages.get(&target) {
                    Some(text) => parse(text).anchors,
                    None => {
                        problems.push(format!(
                            "{where_}: {} is not a page this test reads",
                            target.display()
                        ));
                        continue;
                    }
                },
            };
            if !anchors.contains(anchor) {
                problems.push(format!(
                    "{where_}: {} has no heading with the anchor #{anchor}",
                    target.display()
                ));
            }
        }
    }
    problems
}

/// `README.md` and every Markdown file under `docs/`, relative to the root.
fn documentation(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut pages = BTreeMap::new();
    let mut dirs = vec![root.join("docs")];
    let mut files = vec![root.join("README.md")];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let relative = file
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| file.clone());
        pages.insert(relative, text);
    }
    pages
}

#[test]
fn every_relative_link_and_anchor_in_the_readme_and_docs_resolves() {
    let root = kiln_tests::workspace_root();
    let pages = documentation(&root);
    assert!(
        pages.len() >= 6,
        "expected README.md and the pages of docs/, found {:?}",
        pages.keys().collect::<Vec<_>>()
    );
    let problems = broken_links(&pages, |p| root.join(p).exists());
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn broken_files_and_anchors_are_found() {
    let pages: BTreeMap<PathBuf, String> = [
        (
            "README.md",
            "# kiln\n\n## Run it locally\n\n[ok](#run-it-locally) [ok](docs/a.md#the-local-stack-make-run-and-make-dev) \
             [ok](docs/a.md) ![ok](docs/slack/x.png) [web](https://example.com/#nowhere)\n\n\
             [bad anchor](#run-it) [bad file](docs/missing.md) [bad page anchor](docs/a.md#nowhere)\n\n\
             `[in code](docs/missing.md)`\n\n```text\n[in a block](docs/missing.md)\n```\n",
        ),
        (
            "docs/a.md",
            "# A\n\n## The local stack (`make run` and `make dev`)\n\n[up](../README.md#kiln) \
             [escape](../../outside.md) [ref][r]\n\n[r]: slack/missing.png\n",
        ),
    ]
    .into_iter()
    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
    .collect();
    let files: HashSet<PathBuf> = ["README.md", "docs/a.md", "docs/slack/x.png"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let problems = broken_links(&pages, |p| files.contains(p));
    let expected = [
        "README.md:7: #run-it: README.md has no heading with the anchor #run-it",
        "README.md:7: docs/missing.md: docs/missing.md does not exist",
        "README.md:7: docs/a.md#nowhere: docs/a.md has no heading with the anchor #nowhere",
        "docs/a.md:5: ../../outside.md: points outside the repository",
        "docs/a.md:5: slack/missing.png: docs/slack/missing.png does not exist",
    ];
    let mut sorted = problems.clone();
    sorted.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(sorted, expected);
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        github_slug("The local stack (`make run` and `make dev`)"),
        "the-local-stack-make-run-and-make-dev"
    );
    assert_eq!(github_slug("deploy-trigger"), "deploy-trigger");
    assert_eq!(
        github_slug("Dead letters and replay"),
        "dead-letters-and-replay"
    );
    assert_eq!(github_slug("What's new: 2.0!"), "whats-new-20");
    let page = parse("# A\n\n## Notes\n\n## Notes\n");
    assert!(page.anchors.contains("notes") && page.anchors.contains("notes-1"));
}
