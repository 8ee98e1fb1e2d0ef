//! Which pushes deploy where, and which repositories may ask.
//!
//! `DEPLOY_BRANCHES` and `DEPLOY_TAGS` are ordered `pattern=environment`
//! rules: the first pattern that matches the branch or tag name wins. A
//! pattern is a literal name, or a prefix followed by one `*` at the end
//! (`release/*`, `v*`, or `*` alone for everything). `ALLOWED_REPOSITORIES`
//! is a list of `owner/name` or `owner/*`, compared without regard to case,
//! as GitHub does. Everything here is parsed once, at start-up, and is pure.

/// A branch or tag name pattern: a literal, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPattern {
    prefix: String,
    wildcard: bool,
}

impl RefPattern {
    /// Parses one pattern; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (prefix, wildcard) = match raw.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (raw, false),
        };
        if prefix.contains('*') {
            return Err(format!(
                "pattern `{raw}` may only have `*` as its last character"
            ));
        }
        if !wildcard && prefix.is_empty() {
            return Err("a pattern is empty".into());
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "~^:?[\\".contains(*c))
        {
            return Err(format!(
                "pattern `{raw}` contains {bad:?}, which git does not allow in a ref name"
            ));
        }
        if prefix.starts_with("refs/") {
            return Err(format!(
                "pattern `{raw}` must be a branch or tag name, without refs/heads/ or refs/tags/"
            ));
        }
        Ok(RefPattern {
            prefix: prefix.to_string(),
            wildcard,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.wildcard {
            name.starts_with(&self.prefix)
        } else {
            name == self.prefix
        }
    }
}

/// One `pattern=environment` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: RefPattern,
    pub environment: String,
}

/// Ordered rules; the first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefRules(Vec<Rule>);

impl RefRules {
    /// No rules: nothing of this kind deploys.
    pub fn none() -> Self {
        RefRules(Vec::new())
    }

    /// Builds rules from `(pattern, environment)` pairs, in order.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, String> {
        pairs
            .iter()
            .map(|(pattern, environment)| {
                let pattern = RefPattern::parse(pattern)?;
                check_environment_name(environment)?;
                Ok(Rule {
                    pattern,
                    environment: environment.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(RefRules)
    }

    /// The environment of the first rule matching `name`.
    pub fn environment_for(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|rule| rule.pattern.matches(name))
            .map(|rule| rule.environment.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The environments the rules deploy to, in rule order.
    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|rule| rule.environment.as_str())
    }
}

/// Environment names in rules are used as SNS attribute values and by the
/// deploy side to pick a stack, so they are kept to a safe alphabet.
pub(crate) fn check_environment_name(environment: &str) -> Result<(), String> {
    let ok = !environment.is_empty()
        && environment.len() <= 64
        && environment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "environment `{environment}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// The branch and tag rules together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub branches: RefRules,
    pub tags: RefRules,
}

/// Where a pushed ref goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// Deploy to this environment.
    Deploy(&'a str),
    /// A branch that matches no rule in `DEPLOY_BRANCHES`.
    UnmatchedBranch(&'a str),
    /// A tag that matches no rule in `DEPLOY_TAGS`.
    UnmatchedTag(&'a str),
    /// Neither `refs/heads/…` nor `refs/tags/…` (e.g. `refs/notes/…`).
    NotABranchOrTag,
}

impl Routes {
    /// Routes a full ref (`refs/heads/main`, `refs/tags/v1.2.0`).
    pub fn route<'a>(&'a self, full_ref: &'a str) -> Route<'a> {
        if let Some(branch) = full_ref.strip_prefix("refs/heads/") {
            match self.branches.environment_for(branch) {
                Some(environment) => Route::Deploy(environment),
                None => Route::UnmatchedBranch(branch),
            }
        } else if let Some(tag) = full_ref.strip_prefix("refs/tags/") {
            match self.tags.environment_for(tag) {
                Some(environment) => Route::Deploy(environment),
                None => Route::UnmatchedTag(tag),
            }
        } else {
            Route::NotABranchOrTag
        }
    }
}

/// One `owner/name` or `owner/*` entry, stored lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RepositoryPattern {
    owner: String,
    /// `None` for `owner/*`.
    name: Option<String>,
}

/// `ALLOWED_REPOSITORIES`: unset allows every repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryAllowlist(Option<Vec<RepositoryPattern>>);

impl RepositoryAllowlist {
    pub fn any() -> Self {
        RepositoryAllowlist(None)
    }

    /// Parses `owner/name` and `owner/*` entries.
    pub fn from_entries(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let bad = || format!("`{entry}` is not owner/name or owner/*");
                let (owner, name) = entry.split_once('/').ok_or_else(bad)?;
                if !is_github_name(owner) {
                    return Err(bad());
                }
                let name = match name {
                    "*" => None,
                    name if is_github_name(name) => Some(name.to_ascii_lowercase()),
                    _ => return Err(bad()),
                };
                Ok(RepositoryPattern {
                    owner: owner.to_ascii_lowercase(),
                    name,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(|patterns| RepositoryAllowlist(Some(patterns)))
    }

    /// Whether `full_name` (`owner/name`) may trigger deployments.
    pub fn allows(&self, full_name: &str) -> bool {
        let Some(patterns) = &self.0 else {
            return true;
        };
        let Some((owner, name)) = full_name.split_once('/') else {
            return false;
        };
        patterns.iter().any(|pattern| {
            pattern.owner.eq_ignore_ascii_case(owner)
                && pattern
                    .name
                    .as_deref()
                    .is_none_or(|allowed| allowed.eq_ignore_ascii_case(name))
        })
    }

    pub fn is_restricted(&self) -> bool {
        self.0.is_some()
    }
}

/// GitHub owner and repository names: letters, digits, `-`, `_` and `.`.
fn is_github_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(p, e)| (p.to_string(), e.to_string()))
            .collect()
    }

    fn routes(branches: &[(&str, &str)], tags: &[(&str, &str)]) -> Routes {
        Routes {
            branches: RefRules::from_pairs(&pairs(branches)).unwrap(),
            tags: RefRules::from_pairs(&pairs(tags)).unwrap(),
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = routes(
            &[
                ("release/hotfix-*", "production"),
                ("release/*", "staging"),
                ("main", "production"),
                ("*", "dev"),
            ],
            &[("v*", "production")],
        );
        assert_eq!(
            r.route("refs/heads/release/hotfix-1"),
            Route::Deploy("production")
        );
        assert_eq!(r.route("refs/heads/release/2.0"), Route::Deploy("staging"));
        assert_eq!(r.route("refs/heads/main"), Route::Deploy("production"));
        assert_eq!(r.route("refs/heads/feature/x"), Route::Deploy("dev"));
        assert_eq!(r.route("refs/tags/v1.2.0"), Route::Deploy("production"));
        assert_eq!(r.route("refs/tags/nightly"), Route::UnmatchedTag("nightly"));
        assert_eq!(r.route("refs/notes/commits"), Route::NotABranchOrTag);
    }

    #[test]
    fn literal_patterns_match_exactly() {
        let r = routes(&[("main", "production")], &[]);
        assert_eq!(r.route("refs/heads/main"), Route::Deploy("production"));
        assert_eq!(r.route("refs/heads/main2"), Route::UnmatchedBranch("main2"));
        assert_eq!(
            r.route("refs/heads/maintenance"),
            Route::UnmatchedBranch("maintenance")
        );
        // Branch rules never apply to tags of the same name.
        assert_eq!(r.route("refs/tags/main"), Route::UnmatchedTag("main"));
        // No rules at all: nothing deploys.
        assert_eq!(
            Routes::default().route("refs/heads/main"),
            Route::UnmatchedBranch("main")
        );
    }

    #[test]
    fn bad_patterns_and_environments_are_rejected() {
        for (pattern, environment) in [
            ("re*lease", "staging"),
            ("**", "staging"),
            ("", "staging"),
            ("main branch", "production"),
            ("refs/heads/main", "production"),
            ("a:b", "production"),
            ("main", ""),
            ("main", "prod env"),
            ("main", "prod/eu"),
        ] {
            assert!(
                RefRules::from_pairs(&pairs(&[(pattern, environment)])).is_err(),
                "{pattern}={environment} should be rejected"
            );
        }
        assert!(RefRules::from_pairs(&pairs(&[("*", "dev")])).is_ok());
    }

    #[test]
    fn allowlist_matches_owner_name_and_owner_star_ignoring_case() {
        let allow = RepositoryAllowlist::from_entries(&[
            "Codertocat/Hello-World".to_string(),
            "octo-org/*".to_string(),
        ])
        .unwrap();
        assert!(allow.allows("Codertocat/Hello-World"));
        assert!(allow.allows("codertocat/hello-world"));
        assert!(allow.allows("octo-org/octo-repo"));
        assert!(allow.allows("Octo-Org/anything"));
        assert!(!allow.allows("Codertocat/other"));
        assert!(!allow.allows("octo-org-evil/octo-repo"));
        assert!(!allow.allows("Codertocat"));
        assert!(allow.is_restricted());
        assert!(RepositoryAllowlist::any().allows("anyone/anything"));
        assert!(!RepositoryAllowlist::any().is_restricted());
    }

    #[test]
    fn bad_allowlist_entries_are_rejected() {
        for entry in [
            "Codertocat",
            "*/*",
            "owner/",
            "/name",
            "a/b/c",
            "own er/x",
            "o/na*",
        ] {
            assert!(
                RepositoryAllowlist::from_entries(&[entry.to_string()]).is_err(),
                "{entry} should be rejected"
            );
        }
    }
}
