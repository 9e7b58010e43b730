//! Who may do what, as a pure function of a principal's grants: roles, actions, namespace
//! patterns. No I/O; table-tested.
//!
//! Decisions are made on a parsed [`RepoName`], never on raw path text, so `team-a/../team-b`,
//! case variants and encoded slashes never reach here (they do not parse).

use std::fmt;
use std::str::FromStr;

use bonded_types::RepoName;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests, create and move tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Manage members and policies of the namespace.
    Manage,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Manage];

    /// The Docker token spec's action names (`*` is every action).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Manage => "*",
        }
    }

    /// Parses one action of a token scope; `*` means all of them.
    pub fn parse_scope(s: &str) -> Option<Vec<Action>> {
        match s {
            "pull" => Some(vec![Action::Pull]),
            "push" => Some(vec![Action::Push]),
            "delete" => Some(vec![Action::Delete]),
            "*" => Some(Action::ALL.to_vec()),
            _ => None,
        }
    }
}

/// A role held on a namespace. Each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Pull.
    Reader,
    /// Pull and push.
    Developer,
    /// Also delete, move tags, sign, promote.
    Maintainer,
    /// Also manage members and policies.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, action: Action) -> bool {
        let needed = match action {
            Action::Pull => Role::Reader,
            Action::Push => Role::Developer,
            Action::Delete => Role::Maintainer,
            Action::Manage => Role::Admin,
        };
        self >= needed
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "developer" => Ok(Role::Developer),
            "maintainer" => Ok(Role::Maintainer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "role {other:?} is not one of reader, developer, maintainer, admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which repositories a grant covers: `team-a/` (every repository under `team-a/`), a glob such
/// as `ml/**` or `apps/*/prod` (`*` stays within one path component, `**` crosses them), `**`
/// (everything), or one exact repository name.
#[derive(Debug, Clone)]
pub struct Namespace {
    text: String,
    kind: NamespaceKind,
}

#[derive(Debug, Clone)]
enum NamespaceKind {
    Prefix(String),
    Glob(globset::GlobMatcher),
    Exact(RepoName),
}

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, repo: &RepoName) -> bool {
        match &self.kind {
            NamespaceKind::Prefix(p) => repo.as_str().starts_with(p.as_str()),
            NamespaceKind::Glob(g) => g.is_match(repo.as_str()),
            NamespaceKind::Exact(r) => r == repo,
        }
    }
}

impl Namespace {
    /// Whether every repository `other` (a namespace pattern) can match is also matched by this
    /// namespace — judged on the pattern text, conservatively: an exact match, a prefix
    /// (`team-a/`, or a glob of the form `team-a/**`) that `other` starts with, or `**`.
    pub fn covers(&self, other: &Namespace) -> bool {
        if self.text == other.text || self.text == "**" {
            return true;
        }
        let prefix = match &self.kind {
            NamespaceKind::Prefix(p) => Some(p.as_str()),
            NamespaceKind::Glob(_) => self
                .text
                .strip_suffix("**")
                .filter(|p| p.ends_with('/') && !p.contains(['*', '?', '[', '{'])),
            NamespaceKind::Exact(_) => None,
        };
        prefix.is_some_and(|p| other.text.starts_with(p))
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Namespace) -> bool {
        self.text == other.text
    }
}

impl FromStr for Namespace {
    type Err = String;
    fn from_str(s: &str) -> Result<Namespace, String> {
        let bad = |why: &str| Err(format!("namespace {s:?} {why}"));
        if s.is_empty() {
            return bad("is empty; use `**` for every repository");
        }
        if s.contains("..") || s.contains("//") || s.starts_with('/') || s.contains('%') {
            return bad("may not contain `..`, `//`, `%` or start with `/`");
        }
        if s.chars()
            .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return bad("must be lowercase without spaces, like repository names");
        }
        let kind = if s.contains(['*', '?', '[', '{']) {
            let glob = globset::GlobBuilder::new(s)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("namespace {s:?} is not a valid glob: {e}"))?;
            NamespaceKind::Glob(glob.compile_matcher())
        } else if let Some(prefix) = s.strip_suffix('/') {
            // The prefix itself must be a valid name, so it can only match real repositories.
            prefix
                .parse::<RepoName>()
                .map_err(|e| format!("namespace {s:?}: {e}"))?;
            NamespaceKind::Prefix(s.to_string())
        } else {
            NamespaceKind::Exact(s.parse().map_err(|e| format!("namespace {s:?}: {e}"))?)
        };
        Ok(Namespace {
            text: s.to_string(),
            kind,
        })
    }
}

/// The grants that apply to one caller, plus whether it is a system admin. Anonymous grants are
/// included for everyone: a logged-in user may always do what an anonymous one may.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub system_admin: bool,
    pub grants: Vec<(Namespace, Role)>,
}

impl Access {
    pub fn everything() -> Access {
        Access {
            system_admin: true,
            grants: vec![],
        }
    }

    /// The highest role this caller holds on `repo` (a system admin: admin).
    pub fn role_on(&self, repo: &RepoName) -> Option<Role> {
        if self.system_admin {
            return Some(Role::Admin);
        }
        self.grants
            .iter()
            .filter(|(ns, _)| ns.matches(repo))
            .map(|(_, r)| *r)
            .max()
    }

    /// The highest role this caller holds on every repository `scope` can match (a grant
    /// counts only if it covers the whole pattern, see [`Namespace::covers`]).
    pub fn role_covering(&self, scope: &Namespace) -> Option<Role> {
        if self.system_admin {
            return Some(Role::Admin);
        }
        self.grants
            .iter()
            .filter(|(ns, _)| ns.covers(scope))
            .map(|(_, r)| *r)
            .max()
    }

    pub fn allows(&self, action: Action, repo: &RepoName) -> bool {
        self.system_admin
            || self
                .grants
                .iter()
                .any(|(ns, role)| role.allows(action) && ns.matches(repo))
    }

    /// Of `wanted`, the actions this caller may do on `repo` (a token request is never granted
    /// more than this).
    pub fn permitted(&self, repo: &RepoName, wanted: &[Action]) -> Vec<Action> {
        let mut out: Vec<Action> = wanted
            .iter()
            .copied()
            .filter(|a| self.allows(*a, repo))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether the caller may see `repo` in listings (it may pull it).
    pub fn sees(&self, repo: &RepoName) -> bool {
        self.allows(Action::Pull, repo)
    }

    /// True if the caller holds any grant at all (or is a system admin).
    pub fn is_empty(&self) -> bool {
        !self.system_admin && self.grants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RepoName {
        s.parse().unwrap()
    }
    fn access(grants: &[(&str, Role)]) -> Access {
        Access {
            system_admin: false,
            grants: grants
                .iter()
                .map(|(ns, role)| (ns.parse().unwrap(), *role))
                .collect(),
        }
    }

    #[test]
    fn every_role_allows_exactly_its_actions() {
        use Action::*;
        let table: [(Role, [bool; 4]); 4] = [
            // (role, [pull, push, delete, manage])
            (Role::Reader, [true, false, false, false]),
            (Role::Developer, [true, true, false, false]),
            (Role::Maintainer, [true, true, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, want) in table {
            for (action, allowed) in [Pull, Push, Delete, Manage].into_iter().zip(want) {
                let a = access(&[("team-a/", role)]);
                assert_eq!(
                    a.allows(action, &r("team-a/app")),
                    allowed,
                    "{role} × {action:?} on team-a/app"
                );
                assert!(
                    !a.allows(action, &r("team-b/app")),
                    "{role} × {action:?} outside its namespace"
                );
            }
        }
    }

    #[test]
    fn system_admin_may_do_everything_everywhere() {
        let a = Access::everything();
        for action in Action::ALL {
            assert!(a.allows(action, &r("anything/at/all")));
        }
    }

    #[test]
    fn no_grants_allow_nothing() {
        let a = Access::default();
        for action in Action::ALL {
            assert!(!a.allows(action, &r("team-a/app")));
        }
    }

    #[test]
    fn namespace_patterns_match_what_they_say() {
        let cases: &[(&str, &str, bool)] = &[
            ("team-a/", "team-a/app", true),
            ("team-a/", "team-a/deep/app", true),
            ("team-a/", "team-a", false),
            ("team-a/", "team-ab/app", false),
            ("team-a/", "x/team-a/app", false),
            ("ml/**", "ml/recsys", true),
            ("ml/**", "ml/a/b/c", true),
            ("ml/**", "mlx/recsys", false),
            ("apps/*/prod", "apps/web/prod", true),
            ("apps/*/prod", "apps/web/x/prod", false),
            ("**", "anything/goes", true),
            ("team-a/app", "team-a/app", true),
            ("team-a/app", "team-a/app2", false),
            ("team-a/app", "team-a/app/sub", false),
        ];
        for (ns, repo, want) in cases {
            let n: Namespace = ns.parse().unwrap();
            assert_eq!(n.matches(&r(repo)), *want, "{ns} vs {repo}");
        }
    }

    #[test]
    fn namespace_tricks_are_refused_or_match_nothing_else() {
        for bad in [
            "",
            "team-a/../team-b/",
            "Team-A/",
            "team-a//",
            "/team-a/",
            "a%2fb/",
            "a b",
        ] {
            assert!(bad.parse::<Namespace>().is_err(), "{bad:?} must not parse");
        }
        // Names a client could send to escape a namespace never parse as repository names, so
        // they never reach a grant check.
        for trick in [
            "team-a/../team-b/app",
            "TEAM-A/app",
            "team-a%2fapp",
            "team-a//app",
        ] {
            assert!(
                trick.parse::<RepoName>().is_err(),
                "{trick:?} must not parse"
            );
        }
    }

    #[test]
    fn a_namespace_covers_only_patterns_inside_it() {
        let cases: &[(&str, &str, bool)] = &[
            ("team-a/", "team-a/", true),
            ("team-a/", "team-a/app", true),
            ("team-a/", "team-a/sub/", true),
            ("team-a/", "team-a/**", true),
            ("team-a/", "team-ab/", false),
            ("team-a/", "**", false),
            ("ml/**", "ml/recsys", true),
            ("ml/**", "ml/x/", true),
            ("ml/**", "mlx/", false),
            ("apps/*/prod", "apps/*/prod", true),
            ("apps/*/prod", "apps/web/prod", false),
            ("team-a/app", "team-a/app", true),
            ("team-a/app", "team-a/app2", false),
            ("**", "anything/", true),
        ];
        for (outer, inner, want) in cases {
            let (o, i): (Namespace, Namespace) = (outer.parse().unwrap(), inner.parse().unwrap());
            assert_eq!(o.covers(&i), *want, "{outer} covers {inner}");
        }
    }

    #[test]
    fn permitted_intersects_and_never_escalates() {
        let a = access(&[("team-a/", Role::Reader), ("team-a/app", Role::Developer)]);
        use Action::*;
        assert_eq!(
            a.permitted(&r("team-a/app"), &[Push, Pull, Delete]),
            vec![Pull, Push]
        );
        assert_eq!(a.permitted(&r("team-a/other"), &[Push, Pull]), vec![Pull]);
        assert!(a.permitted(&r("team-b/x"), &Action::ALL).is_empty());
    }

    #[test]
    fn roles_and_actions_parse() {
        for role in [Role::Reader, Role::Developer, Role::Maintainer, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("owner".parse::<Role>().is_err());
        assert_eq!(Action::parse_scope("*").unwrap(), Action::ALL.to_vec());
        assert_eq!(Action::parse_scope("pull").unwrap(), vec![Action::Pull]);
        assert!(Action::parse_scope("PULL").is_none());
    }
}
