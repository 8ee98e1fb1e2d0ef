//! Which routed pushes deploy nothing: a skip marker in the head commit's
//! message, or no changed file matching the environment's `DEPLOY_PATHS`.
//!
//! For a push that maps to an environment, in this order:
//! 1. a skip marker (`[skip deploy]`, `[deploy skip]`, `[no deploy]`,
//!    anywhere in the head commit's message, in any case) skips it, on a
//!    branch or a tag;
//! 2. on a branch, when the environment has globs, the push deploys only
//!    if a changed file matches them ([`crate::paths`]), unless the file
//!    list may be incomplete, in which case it deploys.
//!
//! `[skip ci]` is not a skip marker: it is addressed to CI, and a deploy
//! that silently didn't happen because of it would surprise people.
//! `deployment` events are explicit requests, so neither rule applies to
//! them.

use crate::config::DEPLOY_PATHS;
use crate::github::PushEvent;
use crate::paths::{self, PathDecision};

/// The markers, as the reply names them. Matched without regard to ASCII
/// case.
pub const SKIP_MARKERS: [&str; 3] = ["[skip deploy]", "[deploy skip]", "[no deploy]"];

/// The skip marker in a commit message, if any (the earliest when there
/// are several).
pub fn skip_marker(message: &str) -> Option<&'static str> {
    let message = message.as_bytes();
    SKIP_MARKERS
        .iter()
        .filter_map(|marker| {
            message
                .windows(marker.len())
                .position(|window| window.eq_ignore_ascii_case(marker.as_bytes()))
                .map(|at| (at, *marker))
        })
        .min()
        .map(|(_, marker)| marker)
}

/// The rule that skipped a deploy: the `Rule` dimension of the
/// `DeploysSkipped` metric, and the `rule` of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRule {
    SkipMarker,
    PathFilter,
}

impl SkipRule {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipRule::SkipMarker => "skip-marker",
            SkipRule::PathFilter => "path-filter",
        }
    }
}

/// A push that maps to `environment` but deploys nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub rule: SkipRule,
    pub environment: String,
    pub reason: String,
}

/// Whether a push to `git_ref`, routed to `environment`, is skipped. When
/// the path filter lets it through, the log says why (the matching file,
/// or why the file list was not trusted).
pub fn check(
    deploy_paths: &paths::DeployPaths,
    push: &PushEvent,
    git_ref: &str,
    environment: &str,
) -> Option<Skip> {
    let skip = |rule, reason| Skip {
        rule,
        environment: environment.to_string(),
        reason,
    };
    let message = push.head_commit.as_ref().and_then(|c| c.message.as_deref());
    if let Some(marker) = message.and_then(skip_marker) {
        return Some(skip(
            SkipRule::SkipMarker,
            format!("the head commit's message carries the skip marker {marker}"),
        ));
    }
    // Tags are releases: they deploy whatever changed.
    if !git_ref.starts_with("refs/heads/") {
        return None;
    }
    let filter = deploy_paths.for_environment(environment)?;
    let rule = SkipRule::PathFilter.as_str();
    match paths::decide(filter, push) {
        PathDecision::Matches { file, glob } => {
            tracing::info!(
                rule,
                environment,
                file,
                glob,
                "a changed file matches {DEPLOY_PATHS}"
            );
            None
        }
        PathDecision::Incomplete(why) => {
            let why = why.to_string();
            tracing::info!(
                rule,
                environment,
                why,
                "{DEPLOY_PATHS} not applied: the changed-file list may be incomplete, so the push deploys"
            );
            None
        }
        PathDecision::NoMatch { changed } => Some(skip(
            SkipRule::PathFilter,
            format!(
                "no changed file matches {DEPLOY_PATHS} for {environment} ({changed} changed {} checked)",
                if changed == 1 { "file" } else { "files" }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::Commit;
    use proptest::prelude::*;

    #[test]
    fn each_marker_is_found_anywhere_in_any_case() {
        for marker in SKIP_MARKERS {
            for message in [
                marker.to_string(),
                marker.to_uppercase(),
                format!("docs: fix a typo {}", marker.to_uppercase()),
                format!("Fix typo\n\nNothing to ship. {marker}\n"),
                format!("{}{}", &marker[..3].to_uppercase(), &marker[3..]),
            ] {
                assert_eq!(skip_marker(&message), Some(marker), "{message:?}");
            }
        }
        assert_eq!(
            skip_marker("[Skip Deploy] and [NO DEPLOY]"),
            Some("[skip deploy]")
        );
        assert_eq!(
            skip_marker("[no deploy] then [skip deploy]"),
            Some("[no deploy]")
        );
    }

    #[test]
    fn near_misses_and_ci_markers_are_not_skip_markers() {
        for message in [
            "[skip ci]",
            "[ci skip]",
            "[no ci]",
            "[skip actions]",
            "***NO_CI***",
            "skip deploy",
            "[skip  deploy]",
            "[ skip deploy ]",
            "[skip-deploy]",
            "[skip deploy",
            "(skip deploy)",
            "[skip deployment]",
            "",
        ] {
            assert_eq!(skip_marker(message), None, "{message:?}");
        }
        // The Kelvin sign lowercases to `k` in Unicode, but is not ASCII.
        assert_eq!(skip_marker("[s\u{212a}ip deploy]"), None);
    }

    fn push(git_ref_created: bool, message: &str, files: &[&str]) -> PushEvent {
        let commit = Commit {
            id: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
            message: Some(message.into()),
            modified: Some(files.iter().map(|f| f.to_string()).collect()),
            ..Commit::default()
        };
        PushEvent {
            created: Some(git_ref_created),
            forced: Some(false),
            commits: Some(vec![commit.clone()]),
            head_commit: Some(commit),
            ..PushEvent::default()
        }
    }

    #[test]
    fn rules_apply_in_order() {
        let paths = paths::DeployPaths::parse("production=infra/**").unwrap();
        let main = "refs/heads/main";
        let docs = push(false, "docs", &["README.md"]);
        let skipped = check(&paths, &docs, main, "production").unwrap();
        assert_eq!(skipped.rule, SkipRule::PathFilter);
        assert_eq!(skipped.environment, "production");
        assert_eq!(
            skipped.reason,
            "no changed file matches DEPLOY_PATHS for production (1 changed file checked)"
        );
        assert_eq!(check(&paths, &docs, main, "staging"), None);
        assert_eq!(check(&paths, &docs, "refs/tags/v1.0.0", "production"), None);
        assert_eq!(
            check(
                &paths,
                &push(true, "docs", &["README.md"]),
                main,
                "production"
            ),
            None
        );
        assert_eq!(
            check(
                &paths,
                &push(false, "infra", &["infra/a.yaml"]),
                main,
                "production"
            ),
            None
        );

        // The marker comes first, on branches and tags alike.
        let marked = push(false, "infra [No Deploy]", &["infra/a.yaml"]);
        for git_ref in [main, "refs/tags/v1.0.0"] {
            let skipped = check(&paths, &marked, git_ref, "production").unwrap();
            assert_eq!(skipped.rule, SkipRule::SkipMarker);
            assert_eq!(
                skipped.reason,
                "the head commit's message carries the skip marker [no deploy]"
            );
        }
        assert_eq!(
            check(
                &paths,
                &push(false, "[skip ci]", &["infra/a.yaml"]),
                main,
                "production"
            ),
            None
        );
    }

    /// Flips the case of the ASCII letters selected by `mask`.
    fn recase(text: &str, mask: &[bool]) -> String {
        text.chars()
            .zip(mask.iter().cycle())
            .map(|(c, upper)| if *upper { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    proptest! {
        #[test]
        fn a_marker_in_any_case_anywhere_is_found(
            before in "\\PC{0,40}",
            after in "\\PC{0,40}",
            which in 0..SKIP_MARKERS.len(),
            mask in proptest::collection::vec(any::<bool>(), 1..16),
        ) {
            let marker = SKIP_MARKERS[which];
            let message = format!("{before}{}{after}", recase(marker, &mask));
            prop_assert!(skip_marker(&message).is_some());
        }

        #[test]
        fn a_message_without_brackets_never_skips(message in "[^\\[]{0,200}") {
            prop_assert_eq!(skip_marker(&message), None);
        }

        #[test]
        fn the_marker_found_is_in_the_message(message in "\\PC{0,200}") {
            if let Some(marker) = skip_marker(&message) {
                prop_assert!(message.to_ascii_lowercase().contains(marker));
            }
        }
    }
}
