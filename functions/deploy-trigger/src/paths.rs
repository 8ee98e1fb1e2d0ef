//! `DEPLOY_PATHS`: which changed files make a branch push deploy, per
//! environment.
//!
//! The value is `ENV=GLOB[,GLOB...][;ENV=GLOB[,GLOB...]]`, for example
//! `production=infra/**,services/api/**;staging=**`. An environment that is
//! not listed deploys on any change. Everything here is parsed once, at
//! start-up, and is pure.
//!
//! # Glob syntax, and where it differs from GitHub Actions' `paths`
//!
//! Globs follow GitHub Actions' `paths` filters ("Patterns to match file
//! paths" and the "Filter pattern cheat sheet" in
//! <https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax#patterns-to-match-file-paths>):
//! a glob matches the whole path from the repository root, `*` matches any
//! characters but `/`, `**` matches any characters including `/`, `[...]`
//! matches one character of a set, `\` escapes, and a glob starting with
//! `!` excludes what the globs before it included (the last glob that
//! matches a file decides, and at least one glob must include).
//!
//! Matching is `globset`'s, with `literal_separator(true)` (so `*`, `?` and
//! `[...]` never cross a `/`) and `backslash_escape(true)` (on every
//! platform). Checked against GitHub's rules in the tests below:
//! `**` at the start (`**/README.md` matches `README.md` too), in the middle
//! (`a/**/b` matches `a/b`), at the end (`infra/**` matches everything under
//! `infra/`, never `infrastructure/x`); `*` matches dotfiles (`*` matches
//! `.gitignore`, as GitHub's `**` matches `.github/...`); spaces and
//! Unicode are ordinary characters; matching is case-sensitive, like git.
//!
//! Where they differ, kiln refuses the glob at start-up rather than match
//! differently:
//! - GitHub lets `**` touch other characters (`**.js` is every `.js` file
//!   in the tree); `globset` would silently read `**.js` as `*.js` (the
//!   root only). kiln requires `**` to be a whole path segment: write
//!   `**/*.js`.
//! - `globset` reads `{a,b}` as alternation, which GitHub does not have,
//!   and `,` already separates globs here: a literal brace is written `\{`.
//! - A glob starting with `/` or `./`, or ending with `/`, never matches a
//!   path as GitHub lists them (`docs/README.md`).
//!
//! - `globset` matches bytes: `[...]` matches one byte, so a class holding
//!   a non-ASCII character (`[éè]`) could never match it.
//!
//! Three differences remain, all documented for users:
//! - GitHub's cheat sheet gives `?` and `+` regular-expression meanings
//!   (zero-or-one and one-or-more of the preceding character); in kiln `?`
//!   is the glob wildcard for one character within a segment, and `+` is
//!   an ordinary character.
//! - That `?` (like `[...]`) matches one byte: any ASCII character, but not
//!   a character such as `é` (two bytes in UTF-8). `*` has no such limit.
//! - `[!a]` negates a class in `globset`; GitHub documents `!` only at the
//!   start of a pattern.
//!
//! # When the file list may be incomplete
//!
//! GitHub's push payload (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>)
//! documents two caps: `commits` "includes a maximum of 2048 commits", and
//! each commit's `added`, `removed` and `modified` report "a maximum of 3000
//! changed files". A list at either cap may have been cut, and a push that
//! lists no commits, was forced, or created its branch does not list what
//! changed since the environment's last deploy: the filter is then not
//! applied, because skipping a needed deployment is worse than running an
//! unneeded one.

use std::collections::HashSet;
use std::fmt;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::github::{Commit, PushEvent};
use crate::routing::check_environment_name;

/// GitHub lists at most this many commits in a push payload.
pub const MAX_COMMITS: usize = 2048;

/// GitHub lists at most this many changed files per commit.
pub const MAX_FILES_PER_COMMIT: usize = 3000;

/// One glob, as written (without its `!`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathGlob {
    pattern: String,
    excludes: bool,
}

/// One environment's globs, in order.
#[derive(Debug, Clone)]
pub struct PathFilter {
    globs: Vec<PathGlob>,
    /// The same globs compiled, in the same order.
    set: GlobSet,
}

impl PathFilter {
    /// Compiles an environment's globs; the error says which glob is wrong
    /// and why.
    pub fn new<S: AsRef<str>>(globs: &[S]) -> Result<Self, String> {
        let mut parsed = Vec::with_capacity(globs.len());
        let mut builder = GlobSetBuilder::new();
        for raw in globs {
            let (glob, compiled) = parse_glob(raw.as_ref())?;
            parsed.push(glob);
            builder.add(compiled);
        }
        if parsed.iter().all(|glob| glob.excludes) {
            return Err(
                "its globs only exclude (`!…`): add at least one glob that includes files".into(),
            );
        }
        let set = builder
            .build()
            .map_err(|e| format!("the globs could not be compiled: {}", e.kind()))?;
        Ok(PathFilter { globs: parsed, set })
    }

    /// The glob that makes `path` count as a change for this environment:
    /// the last glob that matches it, when that one includes.
    pub fn deciding_glob(&self, path: &str) -> Option<&str> {
        let last = self.set.matches(path).into_iter().max()?;
        let glob = &self.globs[last];
        (!glob.excludes).then_some(glob.pattern.as_str())
    }

    /// The globs as written, `!` included.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.globs.iter().map(|glob| {
            if glob.excludes {
                format!("!{}", glob.pattern)
            } else {
                glob.pattern.clone()
            }
        })
    }
}

impl PartialEq for PathFilter {
    fn eq(&self, other: &Self) -> bool {
        self.globs == other.globs
    }
}

/// `DEPLOY_PATHS`: the environments that have globs, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployPaths(Vec<(String, PathFilter)>);

impl DeployPaths {
    /// No filters: every environment deploys on any change.
    pub fn none() -> Self {
        DeployPaths(Vec::new())
    }

    /// Parses `ENV=GLOB[,GLOB...][;ENV=GLOB[,GLOB...]]`; the error says what
    /// is wrong (the caller names the variable).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut filters: Vec<(String, PathFilter)> = Vec::new();
        for (index, entry) in raw.split(';').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(format!("entry {} is empty", index + 1));
            }
            let Some((environment, globs)) = entry.split_once('=') else {
                return Err(format!("`{entry}` is not environment=glob[,glob...]"));
            };
            let environment = environment.trim();
            check_environment_name(environment)?;
            if filters.iter().any(|(known, _)| known == environment) {
                return Err(format!(
                    "environment {environment} is listed twice: put all its globs in one entry"
                ));
            }
            let globs = kiln::config::parse_list(globs)
                .map_err(|why| format!("the globs of {environment}: {why}"))?;
            let filter = PathFilter::new(&globs)
                .map_err(|why| format!("the globs of {environment}: {why}"))?;
            filters.push((environment.to_string(), filter));
        }
        Ok(DeployPaths(filters))
    }

    /// The globs of `environment`, if it has any.
    pub fn for_environment(&self, environment: &str) -> Option<&PathFilter> {
        self.0
            .iter()
            .find(|(name, _)| name == environment)
            .map(|(_, filter)| filter)
    }

    /// The environments that have globs.
    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a push's file list was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// `commits` is empty or missing: a new branch at an existing commit, or
    /// a force push back to an earlier one.
    NoCommits,
    /// The push created the branch: its commits are listed against another
    /// branch, not against what this branch (and environment) had.
    CreatedBranch,
    /// A force push: the files changed by the commits it replaced are not
    /// listed.
    Forced,
    /// `commits` is at GitHub's cap.
    CommitsAtCap(usize),
    /// One commit's file lists are at GitHub's cap.
    FilesAtCap { commit: String, files: usize },
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incomplete::NoCommits => f.write_str(
                "the push lists no commits (a new branch at an existing commit, or a force push)",
            ),
            Incomplete::CreatedBranch => f.write_str(
                "the push created the branch, so its file list does not show what changed since the last deploy",
            ),
            Incomplete::Forced => f.write_str(
                "the push was forced, so the files of the commits it replaced are not listed",
            ),
            Incomplete::CommitsAtCap(count) => write!(
                f,
                "the push lists {count} commits, GitHub's maximum, so some may be missing"
            ),
            Incomplete::FilesAtCap { commit, files } => write!(
                f,
                "commit {commit} lists {files} changed files, GitHub's maximum per commit, so some may be missing"
            ),
        }
    }
}

/// What an environment's globs say about one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathDecision<'a> {
    /// This changed file matches this glob: deploy.
    Matches { file: &'a str, glob: &'a str },
    /// None of the `changed` distinct files matches: skip.
    NoMatch { changed: usize },
    /// The file list may be incomplete: deploy without filtering.
    Incomplete(Incomplete),
}

/// Decides a branch push for an environment with globs. The changed files
/// are the union of `added`, `modified` and `removed` over `commits` and
/// `head_commit`.
pub fn decide<'a>(filter: &'a PathFilter, push: &'a PushEvent) -> PathDecision<'a> {
    let commits = push.commits.as_deref().unwrap_or_default();
    if commits.is_empty() {
        return PathDecision::Incomplete(Incomplete::NoCommits);
    }
    if push.created == Some(true) {
        return PathDecision::Incomplete(Incomplete::CreatedBranch);
    }
    if push.forced == Some(true) {
        return PathDecision::Incomplete(Incomplete::Forced);
    }
    if commits.len() >= MAX_COMMITS {
        return PathDecision::Incomplete(Incomplete::CommitsAtCap(commits.len()));
    }
    let all_commits = || commits.iter().chain(push.head_commit.as_ref());
    if let Some(capped) = all_commits().find(|c| c.files().count() >= MAX_FILES_PER_COMMIT) {
        return PathDecision::Incomplete(Incomplete::FilesAtCap {
            commit: capped.short_id().to_string(),
            files: capped.files().count(),
        });
    }
    let mut seen = HashSet::new();
    for file in all_commits().flat_map(Commit::files) {
        if !seen.insert(file) {
            continue;
        }
        if let Some(glob) = filter.deciding_glob(file) {
            return PathDecision::Matches { file, glob };
        }
    }
    PathDecision::NoMatch {
        changed: seen.len(),
    }
}

/// Checks one glob against the rules in the module docs and compiles it.
fn parse_glob(raw: &str) -> Result<(PathGlob, Glob), String> {
    let (excludes, pattern) = match raw.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if pattern.is_empty() {
        return Err(format!("`{raw}` is an empty glob"));
    }
    if pattern.starts_with('/') || pattern.starts_with("./") {
        return Err(format!(
            "`{raw}` starts with `/` or `./`: globs match paths from the repository root without it (`docs/**`)"
        ));
    }
    if pattern.ends_with('/') {
        return Err(format!(
            "`{raw}` ends with `/` and so can never match a file: write `{}**`",
            pattern
        ));
    }
    check_syntax(pattern).map_err(|why| format!("`{raw}`: {why}"))?;
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{raw}`: {}", e.kind()))?;
    Ok((
        PathGlob {
            pattern: pattern.to_string(),
            excludes,
        },
        glob,
    ))
}

/// Refuses what `globset` would read differently from GitHub: `**` that is
/// not a whole path segment, and unescaped braces. Characters inside a
/// `[...]` class and after a `\` are literal.
fn check_syntax(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut class_start = None;
    while i < chars.len() {
        match (chars[i], class_start) {
            ('\\', _) => i += 1,
            // `]` right after `[` or `[!` is a member of the class.
            (']', Some(start)) if i > start + 1 && !(i == start + 2 && chars[start + 1] == '!') => {
                class_start = None
            }
            (c, Some(_)) if !c.is_ascii() => {
                return Err(format!(
                    "`[...]` matches a single byte, so it cannot match {c:?}: use `*` there, or spell the name out"
                ));
            }
            (_, Some(_)) => {}
            ('[', None) => class_start = Some(i),
            ('{' | '}', None) => {
                return Err(
                    "braces are not glob syntax here (list alternatives as separate globs; write a literal brace as `\\{`)"
                        .into(),
                );
            }
            ('*', None) if chars.get(i + 1) == Some(&'*') => {
                let starts_segment = i == 0 || chars[i - 1] == '/';
                let ends_segment = chars.get(i + 2).is_none_or(|c| *c == '/');
                if !(starts_segment && ends_segment) {
                    return Err(
                        "`**` must be a whole path segment (`**/*.md`, `docs/**`, `a/**/b`)".into(),
                    );
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter(globs: &[&str]) -> PathFilter {
        PathFilter::new(globs).unwrap_or_else(|e| panic!("{globs:?}: {e}"))
    }

    fn matches(glob: &str, path: &str) -> bool {
        filter(&[glob]).deciding_glob(path).is_some()
    }

    #[track_caller]
    fn check(glob: &str, yes: &[&str], no: &[&str]) {
        for path in yes {
            assert!(matches(glob, path), "`{glob}` should match `{path}`");
        }
        for path in no {
            assert!(!matches(glob, path), "`{glob}` should not match `{path}`");
        }
    }

    #[test]
    fn star_and_question_mark_stay_within_one_segment() {
        check(
            "*.md",
            &["README.md", ".md", "a b.md"],
            &["docs/a.md", "README.mdx", "README.md/x"],
        );
        check(
            "docs/*",
            &["docs/README.md", "docs/file.txt"],
            &["docs/a/b.md", "docs"],
        );
        check("*", &["README.md", ".gitignore"], &["docs/README.md"]);
        check(
            "v?.txt",
            &["v1.txt", "v_.txt"],
            &["v.txt", "v12.txt", "v/.txt"],
        );
        check("*/*.rs", &["src/main.rs"], &["main.rs", "a/src/main.rs"]);
    }

    #[test]
    fn double_star_at_the_start_middle_and_end() {
        check(
            "**/README.md",
            &["README.md", "docs/README.md", "a/b/c/README.md"],
            &["README.md.bak", "docs/README.mdx", "xREADME.md"],
        );
        check(
            "docs/**/*.md",
            &["docs/a.md", "docs/mona/octocat.md", "docs/a/b/c.md"],
            &["a.md", "docs/a.txt", "other/docs/a.md"],
        );
        check(
            "infra/**",
            &["infra/template.yaml", "infra/tests/test_plan.py"],
            &["infrastructure/x", "infra", "x/infra/y"],
        );
        check(
            "**",
            &["README.md", ".github/workflows/ci.yml", "a/b/c"],
            &[],
        );
    }

    #[test]
    fn the_whole_path_must_match() {
        check(
            "services/api/**",
            &["services/api/main.rs"],
            &["x/services/api/main.rs", "services/apiv2/x"],
        );
        check(
            "Makefile",
            &["Makefile"],
            &["src/Makefile", "Makefile.old", "makefile"],
        );
    }

    #[test]
    fn dotfiles_spaces_and_unicode_are_ordinary() {
        check(
            "**/.env*",
            &[".env", "deploy/.env.production", ".envrc"],
            &["env", "a.env"],
        );
        check(".github/**", &[".github/workflows/ci.yml"], &["github/x"]);
        check("*/*", &[".github/CODEOWNERS"], &[".gitignore"]);
        check(
            "my docs/**",
            &["my docs/read me.md", "my docs/a/b"],
            &["my-docs/a", "mydocs/a"],
        );
        check(
            "résumé/*.md",
            &["résumé/été.md", "résumé/日本語.md"],
            &["resume/a.md", "résumé/a/b.md"],
        );
        check("文档/**", &["文档/说明.md"], &["文/x"]);
        check(
            "data/*.csv",
            &["data/é.csv", "data/日.csv"],
            &["data/a/b.csv"],
        );
    }

    #[test]
    fn question_mark_and_classes_match_one_byte() {
        // The documented difference: `?` is one byte, so it matches any
        // ASCII character but not `é` (two bytes); `*` matches either.
        check("v?.txt", &["v1.txt"], &["vé.txt", "v日.txt"]);
        check("v*.txt", &["v1.txt", "vé.txt", "v日.txt"], &[]);
        for glob in ["[éè]x", "a/[!é]", "[a-é]"] {
            let err = PathFilter::new(&[glob]).unwrap_err();
            assert!(err.contains("matches a single byte"), "{glob}: {err}");
        }
        // Outside a class, non-ASCII is literal and fine.
        check("é[0-9].md", &["é1.md"], &["e1.md"]);
    }

    #[test]
    fn classes_and_escapes() {
        check(
            "[CB]at.txt",
            &["Cat.txt", "Bat.txt"],
            &["cat.txt", "Rat.txt"],
        );
        check("v[0-9].md", &["v1.md"], &["va.md", "v10.md"]);
        check("lit\\*.md", &["lit*.md"], &["literal.md"]);
        check("lit[*].md", &["lit*.md"], &["lit.md"]);
        check("a\\{b\\}.txt", &["a{b}.txt"], &["ab.txt"]);
        check("[]]x", &["]x"], &["x"]);
        check("c++/*.cc", &["c++/a.cc"], &["c/a.cc", "cc/a.cc"]);
    }

    #[test]
    fn the_last_matching_glob_decides_and_bang_excludes() {
        let f = filter(&["services/**", "!services/**/*.md", "services/api/README.md"]);
        assert_eq!(f.deciding_glob("services/api/main.rs"), Some("services/**"));
        assert_eq!(f.deciding_glob("services/web/README.md"), None);
        assert_eq!(
            f.deciding_glob("services/api/README.md"),
            Some("services/api/README.md")
        );
        assert_eq!(f.deciding_glob("docs/a.md"), None);
        assert_eq!(
            f.patterns().collect::<Vec<_>>(),
            ["services/**", "!services/**/*.md", "services/api/README.md"]
        );
    }

    #[test]
    fn deploy_paths_parse_per_environment() {
        let paths =
            DeployPaths::parse(" production = infra/**, services/api/** ; staging=** ").unwrap();
        assert_eq!(
            paths.environments().collect::<Vec<_>>(),
            ["production", "staging"]
        );
        let production = paths.for_environment("production").unwrap();
        assert_eq!(
            production.patterns().collect::<Vec<_>>(),
            ["infra/**", "services/api/**"]
        );
        assert!(production.deciding_glob("infra/template.yaml").is_some());
        assert!(production.deciding_glob("README.md").is_none());
        assert!(
            paths
                .for_environment("staging")
                .unwrap()
                .deciding_glob("README.md")
                .is_some()
        );
        assert!(paths.for_environment("dev").is_none());
        assert!(DeployPaths::none().is_empty());
        // A glob may contain `=`.
        let paths = DeployPaths::parse("production=config/a=b.txt").unwrap();
        assert!(
            paths
                .for_environment("production")
                .unwrap()
                .deciding_glob("config/a=b.txt")
                .is_some()
        );
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        let cases = [
            ("production", "is not environment=glob"),
            ("production=", "item 1 is empty"),
            ("production=a/**,", "item 2 is empty"),
            ("production=a/**;", "entry 2 is empty"),
            (";production=a/**", "entry 1 is empty"),
            ("=a/**", "environment `` must be"),
            ("prod env=a/**", "environment `prod env` must be"),
            ("production=a/**;production=b/**", "listed twice"),
            ("production=**.js", "`**` must be a whole path segment"),
            ("production=docs/**.md", "`**` must be a whole path segment"),
            ("production=a**/b", "`**` must be a whole path segment"),
            ("production=***", "`**` must be a whole path segment"),
            ("production=src/{a,b}/**", "braces are not glob syntax"),
            ("production=/docs/**", "starts with `/`"),
            ("production=./docs/**", "starts with `/` or `./`"),
            ("production=docs/", "write `docs/**`"),
            ("production=!", "empty glob"),
            ("production=!docs/**", "only exclude"),
            ("production=[a-", "unclosed character class"),
            ("production=a\\", "dangling"),
        ];
        for (raw, expected) in cases {
            let err = DeployPaths::parse(raw).unwrap_err();
            assert!(err.contains(expected), "{raw}: {err}");
        }
    }

    #[test]
    fn the_samconfig_examples_parse() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/samconfig.toml");
        let samconfig = std::fs::read_to_string(path).unwrap();
        let examples: Vec<&str> = samconfig
            .lines()
            .filter_map(|line| line.trim().strip_prefix("# \"DeployPaths="))
            .filter_map(|rest| rest.strip_suffix("\","))
            .collect();
        assert_eq!(examples.len(), 3, "{examples:?}");
        for example in examples {
            let paths = DeployPaths::parse(example).unwrap_or_else(|e| panic!("{example}: {e}"));
            assert!(!paths.is_empty());
        }
    }

    fn commit(id: &str, added: &[&str], modified: &[&str], removed: &[&str]) -> Commit {
        let list = |files: &[&str]| Some(files.iter().map(|f| f.to_string()).collect());
        Commit {
            id: Some(id.into()),
            message: Some("a change".into()),
            added: list(added),
            modified: list(modified),
            removed: list(removed),
        }
    }

    fn push(commits: Vec<Commit>) -> PushEvent {
        PushEvent {
            head_commit: commits.last().cloned(),
            commits: Some(commits),
            created: Some(false),
            forced: Some(false),
            ..PushEvent::default()
        }
    }

    #[test]
    fn any_changed_file_of_any_commit_can_match() {
        let f = filter(&["infra/**"]);
        for (added, modified, removed) in [
            (&["infra/a.yaml"][..], &[][..], &[][..]),
            (&[], &["infra/a.yaml"], &[]),
            (&[], &[], &["infra/a.yaml"]),
        ] {
            let p = push(vec![commit("c1", added, modified, removed)]);
            assert_eq!(
                decide(&f, &p),
                PathDecision::Matches {
                    file: "infra/a.yaml",
                    glob: "infra/**"
                }
            );
        }
        let earlier = push(vec![
            commit("c1", &["infra/a.yaml"], &[], &[]),
            commit("c2", &[], &["README.md"], &[]),
        ]);
        assert!(matches!(
            decide(&f, &earlier),
            PathDecision::Matches {
                file: "infra/a.yaml",
                ..
            }
        ));
        let none = push(vec![
            commit("c1", &["docs/a.md"], &["README.md"], &[]),
            commit("c2", &[], &["README.md"], &["infrastructure/x"]),
        ]);
        assert_eq!(decide(&f, &none), PathDecision::NoMatch { changed: 3 });
    }

    #[test]
    fn head_commit_counts_even_when_commits_leave_it_out() {
        let f = filter(&["infra/**"]);
        let mut p = push(vec![commit("c1", &["docs/a.md"], &[], &[])]);
        p.head_commit = Some(commit("c2", &[], &["infra/x"], &[]));
        assert!(matches!(
            decide(&f, &p),
            PathDecision::Matches {
                file: "infra/x",
                ..
            }
        ));
    }

    #[test]
    fn an_incomplete_list_is_never_filtered() {
        let f = filter(&["infra/**"]);
        let mut p = push(Vec::new());
        assert_eq!(
            decide(&f, &p),
            PathDecision::Incomplete(Incomplete::NoCommits)
        );
        p.commits = None;
        assert_eq!(
            decide(&f, &p),
            PathDecision::Incomplete(Incomplete::NoCommits)
        );

        let docs = || vec![commit("c1", &["docs/a.md"], &[], &[])];
        let mut created = push(docs());
        created.created = Some(true);
        assert_eq!(
            decide(&f, &created),
            PathDecision::Incomplete(Incomplete::CreatedBranch)
        );
        let mut forced = push(docs());
        forced.forced = Some(true);
        assert_eq!(
            decide(&f, &forced),
            PathDecision::Incomplete(Incomplete::Forced)
        );

        let many = push(vec![commit("c", &["docs/a.md"], &[], &[]); MAX_COMMITS]);
        assert_eq!(
            decide(&f, &many),
            PathDecision::Incomplete(Incomplete::CommitsAtCap(MAX_COMMITS))
        );
        let fewer = push(vec![commit("c", &["docs/a.md"], &[], &[]); MAX_COMMITS - 1]);
        assert_eq!(decide(&f, &fewer), PathDecision::NoMatch { changed: 1 });

        let files: Vec<String> = (0..MAX_FILES_PER_COMMIT)
            .map(|i| format!("docs/{i}.md"))
            .collect();
        let (added, modified) = files.split_at(1000);
        let added: Vec<&str> = added.iter().map(String::as_str).collect();
        let modified: Vec<&str> = modified.iter().map(String::as_str).collect();
        let capped = push(vec![commit(
            "0123456789abcdef0123456789abcdef01234567",
            &added,
            &modified,
            &[],
        )]);
        assert_eq!(
            decide(&f, &capped),
            PathDecision::Incomplete(Incomplete::FilesAtCap {
                commit: "0123456".into(),
                files: MAX_FILES_PER_COMMIT
            })
        );
        let below = push(vec![commit("c1", &added, &modified[1..], &[])]);
        assert_eq!(
            decide(&f, &below),
            PathDecision::NoMatch {
                changed: MAX_FILES_PER_COMMIT - 1
            }
        );
    }

    /// A path segment: printable, with spaces, dots and non-ASCII letters.
    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ._éü日本-]{1,8}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    fn path() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(segment(), 1..6)
    }

    /// The segment as a glob that matches only itself.
    fn literal(segment: &str) -> String {
        segment
            .chars()
            .map(|c| match c {
                '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!' => format!("\\{c}"),
                c => c.to_string(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn star_never_crosses_a_slash(dirs in path(), name in segment()) {
            let file = format!("{}/{name}", dirs.join("/"));
            prop_assert!(!matches("*", &file));
            prop_assert!(matches("**", &file));
            let in_its_directory = format!("{}/*", literal(&dirs.join("/")));
            prop_assert!(matches(&in_its_directory, &file));
            let first = literal(&dirs[0]);
            let (under, directly_under) = (format!("{first}/**"), format!("{first}/*"));
            prop_assert!(matches(&under, &file));
            prop_assert_eq!(matches(&directly_under, &file), dirs.len() == 1);
        }

        #[test]
        fn double_star_matches_any_depth(prefix in path(), middle in proptest::collection::vec(segment(), 0..4), name in segment()) {
            let parts: Vec<String> = prefix.iter().chain(&middle).cloned().chain([name.clone()]).collect();
            let file = parts.join("/");
            let glob = format!("{}/**/{}", literal(&prefix.join("/")), literal(&name));
            prop_assert!(matches(&glob, &file), "{} !~ {}", glob, file);
            let anywhere = format!("**/{}", literal(&name));
            prop_assert!(matches(&anywhere, &file));
            prop_assert!(matches(&anywhere, &name));
        }

        #[test]
        fn a_literal_glob_matches_only_its_own_path(a in path(), b in path()) {
            let (a, b) = (a.join("/"), b.join("/"));
            prop_assert!(matches(&literal(&a), &a));
            prop_assert_eq!(matches(&literal(&a), &b), a == b);
        }

        #[test]
        fn a_prefix_directory_is_not_a_parent(dir in segment(), extra in "[a-z]{1,4}", name in segment()) {
            // `infra/**` never matches `infrastructure/...`.
            let glob = format!("{}/**", literal(&dir));
            let (sibling, child) = (format!("{dir}{extra}/{name}"), format!("{dir}/{name}"));
            prop_assert!(!matches(&glob, &sibling));
            prop_assert!(matches(&glob, &child));
        }

        #[test]
        fn parsing_never_panics(raw in ".{0,80}") {
            let _ = DeployPaths::parse(&raw);
        }

        #[test]
        fn parsing_glob_like_input_never_panics(raw in "[a-z=;,!*?/\\[\\]{}\\\\ .]{0,40}") {
            if let Ok(paths) = DeployPaths::parse(&raw) {
                for name in paths.environments() {
                    let filter = paths.for_environment(name).unwrap();
                    let _ = filter.deciding_glob("a/b.c");
                }
            }
        }
    }
}
