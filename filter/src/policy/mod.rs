//! Group-based per-tool policy: rules tried in order, the first match decides.

/// Allow, deny, or allow only with a person's approval (`review`, see `filter::approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
    Review,
}

/// A `*`/`?` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(p: &str) -> Self {
        Glob(p.to_string())
    }

    pub fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

// Iterative glob match with single-star backtracking: linear in practice, no recursion.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == s.get(si) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub tools: Vec<Glob>,
    pub methods: Vec<Glob>,
    pub groups: Vec<String>,
    pub effect: Effect,
}

impl Rule {
    fn matches(&self, method: &str, tool: Option<&str>, groups: &[String]) -> bool {
        let target = tool.is_some_and(|t| self.tools.iter().any(|g| g.matches(t)))
            || self.methods.iter().any(|g| g.matches(method));
        target && (self.groups.is_empty() || self.groups.iter().any(|g| groups.contains(g)))
    }
}

/// The compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default: Effect,
    pub rules: Vec<Rule>,
}

/// What the policy decided and which rule did (`None`: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub rule: Option<usize>,
}

impl Policy {
    pub fn allow_all() -> Self {
        Policy {
            default: Effect::Allow,
            rules: Vec::new(),
        }
    }

    /// Whether the policy can ever refuse a call (if not, requests need not be held for it).
    /// A `review` rule can: without an approval the call does not reach the server.
    pub fn can_deny(&self) -> bool {
        self.default != Effect::Allow || self.rules.iter().any(|r| r.effect != Effect::Allow)
    }

    /// The first rule that asks for a person's approval (`approvals` and `auth` must then be
    /// configured).
    pub fn first_review(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.effect == Effect::Review)
    }

    /// Decides for a JSON-RPC `method` (and `tool` for `tools/call`) and the caller's groups.
    pub fn decide(&self, method: &str, tool: Option<&str>, groups: &[String]) -> Decision {
        for (i, r) in self.rules.iter().enumerate() {
            if r.matches(method, tool, groups) {
                return Decision {
                    effect: r.effect,
                    rule: Some(i),
                };
            }
        }
        Decision {
            effect: self.default,
            rule: None,
        }
    }
}

pub mod enforce;
pub mod judge;
pub mod listing;

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn globs() {
        for (p, s, m) in [
            ("delete_*", "delete_user", true),
            ("delete_*", "delete_", true),
            ("delete_*", "undelete_user", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*_db*", "query_db_v2", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**a", "bbba", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(Glob::new(p).matches(s), m, "{p} ~ {s}");
        }
    }

    #[test]
    fn first_match_wins_with_groups() {
        let p = Policy {
            default: Effect::Allow,
            rules: vec![
                Rule {
                    tools: vec![Glob::new("delete_*")],
                    methods: vec![],
                    groups: vec!["admins".into()],
                    effect: Effect::Allow,
                },
                Rule {
                    tools: vec![Glob::new("delete_*")],
                    methods: vec![],
                    groups: vec![],
                    effect: Effect::Deny,
                },
                Rule {
                    tools: vec![],
                    methods: vec![Glob::new("resources/*")],
                    groups: vec!["eng".into()],
                    effect: Effect::Deny,
                },
            ],
        };
        let admins = vec!["admins".to_string()];
        let eng = vec!["eng".to_string()];
        assert_eq!(
            p.decide("tools/call", Some("delete_user"), &admins).effect,
            Effect::Allow
        );
        let d = p.decide("tools/call", Some("delete_user"), &eng);
        assert_eq!((d.effect, d.rule), (Effect::Deny, Some(1)));
        assert_eq!(
            p.decide("tools/call", Some("echo"), &eng),
            Decision {
                effect: Effect::Allow,
                rule: None
            }
        );
        assert_eq!(p.decide("resources/read", None, &eng).effect, Effect::Deny);
        assert_eq!(
            p.decide("resources/read", None, &admins).effect,
            Effect::Allow
        );
        // A tools rule never matches a method without a tool.
        assert_eq!(p.decide("tools/list", None, &eng).effect, Effect::Allow);
        assert!(p.can_deny());
        assert!(!Policy::allow_all().can_deny());
    }
}
