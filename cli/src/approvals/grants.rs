//! The decision logic of the approval service, pure (no database, no clock): what a check
//! answers given the requests stored for its caller and tool, and whether an approver may
//! decide a request. The store applies these answers with atomic conditional updates, so a
//! decision computed here from a stale read is refused by the database, never applied twice.

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// A pending request nobody decided within `grant_ttl_s` (replaced by a new one).
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// How an approval covers calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One call with exactly these arguments (by digest), within `grant_ttl_s`.
    Once,
    /// Every call of the caller to the tool for `window_s` seconds.
    Window,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Once => "once",
            Mode::Window => "window",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "once" => Some(Mode::Once),
            "window" => Some(Mode::Window),
            _ => None,
        }
    }
}

/// The part of a stored request the decisions read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub iss: String,
    pub sub: String,
    pub tool: String,
    pub arguments_sha256: String,
    pub status: Status,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub mode: Option<Mode>,
    pub window_s: Option<i64>,
    pub consumed_at: Option<i64>,
    pub note: Option<String>,
}

/// Who calls (the filter's identity object, reduced to what keys a grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
}

/// What a check should do, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckPlan {
    /// A live window grant covers the call: approved (count a use of `id`).
    Window {
        id: String,
        approved_by: Option<String>,
    },
    /// An unused `once` approval of these very arguments: consume it, then approved.
    ConsumeOnce {
        id: String,
        approved_by: Option<String>,
    },
    /// The same call waits for a decision already: answer with that request.
    Pending { id: String },
    /// The same call was denied recently: denied, saying by whom and why.
    Denied {
        id: String,
        denied_by: Option<String>,
        note: Option<String>,
    },
    /// Nothing applies: create a pending request.
    Create,
}

/// Settings the decisions depend on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub grant_ttl_s: i64,
    pub window_s_max: i64,
}

/// A live window grant for this caller and tool.
pub fn window_live(g: &Grant, now: i64) -> bool {
    g.status == Status::Approved
        && g.mode == Some(Mode::Window)
        && match (g.decided_at, g.window_s) {
            (Some(at), Some(w)) => at.saturating_add(w) > now,
            _ => false,
        }
}

/// An approved, unconsumed `once` grant still within `grant_ttl_s` of its decision.
pub fn once_usable(g: &Grant, now: i64, limits: Limits) -> bool {
    g.status == Status::Approved
        && g.mode == Some(Mode::Once)
        && g.consumed_at.is_none()
        && g.decided_at
            .is_some_and(|at| at.saturating_add(limits.grant_ttl_s) > now)
}

/// A pending request still waiting (not past `grant_ttl_s` since it was made).
pub fn pending_live(g: &Grant, now: i64, limits: Limits) -> bool {
    g.status == Status::Pending && g.created_at.saturating_add(limits.grant_ttl_s) > now
}

/// A denial that still answers the same call (within `grant_ttl_s` of the decision).
pub fn denial_live(g: &Grant, now: i64, limits: Limits) -> bool {
    g.status == Status::Denied
        && g.decided_at
            .is_some_and(|at| at.saturating_add(limits.grant_ttl_s) > now)
}

fn same_caller(g: &Grant, caller: &Caller<'_>) -> bool {
    g.iss == caller.iss && g.sub == caller.sub
}

/// What a check for (caller, tool, arguments digest) should do, given the requests stored for
/// that caller and tool (any order). Window grants ignore the digest; everything else is bound
/// to it, so other arguments need their own approval.
pub fn plan_check(
    grants: &[Grant],
    caller: &Caller<'_>,
    tool: &str,
    arguments_sha256: &str,
    now: i64,
    limits: Limits,
) -> CheckPlan {
    let mine = |g: &&Grant| same_caller(g, caller) && g.tool == tool;
    let same_call = |g: &&Grant| mine(g) && g.arguments_sha256 == arguments_sha256;
    // The newest decision wins among several of a kind.
    let newest = |a: &&Grant, b: &&Grant| {
        (a.decided_at.unwrap_or(a.created_at), &a.id)
            .cmp(&(b.decided_at.unwrap_or(b.created_at), &b.id))
    };
    if let Some(g) = grants
        .iter()
        .filter(mine)
        .filter(|g| window_live(g, now))
        .max_by(newest)
    {
        return CheckPlan::Window {
            id: g.id.clone(),
            approved_by: g.decided_by.clone(),
        };
    }
    // The oldest usable once grant first: each approval is spent in the order given.
    if let Some(g) = grants
        .iter()
        .filter(same_call)
        .filter(|g| once_usable(g, now, limits))
        .min_by(newest)
    {
        return CheckPlan::ConsumeOnce {
            id: g.id.clone(),
            approved_by: g.decided_by.clone(),
        };
    }
    if let Some(g) = grants
        .iter()
        .filter(same_call)
        .filter(|g| pending_live(g, now, limits))
        .min_by(newest)
    {
        return CheckPlan::Pending { id: g.id.clone() };
    }
    if let Some(g) = grants
        .iter()
        .filter(same_call)
        .filter(|g| denial_live(g, now, limits))
        .max_by(newest)
    {
        return CheckPlan::Denied {
            id: g.id.clone(),
            denied_by: g.decided_by.clone(),
            note: g.note.clone(),
        };
    }
    CheckPlan::Create
}

/// The reason a denied check carries: who denied, and their note.
pub fn denial_reason(denied_by: Option<&str>, note: Option<&str>) -> String {
    let who = denied_by.unwrap_or("an approver");
    match note.filter(|n| !n.is_empty()) {
        Some(n) => format!("denied by {who}: {n}"),
        None => format!("denied by {who}"),
    }
}

/// What an approver asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve { mode: Mode, window_s: Option<i64> },
    Deny,
}

/// Longest note accepted, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The approver made the request (same iss and sub).
    OwnRequest,
    /// Already decided or expired: a replayed decision changes nothing.
    NotPending(Status),
    Expired,
    NoteTooLong,
    BadWindow(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OwnRequest => f.write_str("nobody approves or denies their own request"),
            Refusal::NotPending(s) => write!(f, "the request is {} already", s.as_str()),
            Refusal::Expired => f.write_str("the request expired (grant_ttl_s) undecided"),
            Refusal::NoteTooLong => write!(f, "note is longer than {NOTE_MAX_CHARS} characters"),
            Refusal::BadWindow(m) => f.write_str(m),
        }
    }
}

/// Checks what an approver asks for on its own: the mode's window and the note.
pub fn validate_decision(
    mode: Option<&str>,
    window_s: Option<i64>,
    note: Option<&str>,
    approve: bool,
    limits: Limits,
) -> Result<Decision, Refusal> {
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(Refusal::NoteTooLong);
    }
    if !approve {
        if mode.is_some() || window_s.is_some() {
            return Err(Refusal::BadWindow(
                "a denial takes a note only (no mode, no window_s)".into(),
            ));
        }
        return Ok(Decision::Deny);
    }
    let mode = match mode {
        None => Mode::Once,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            Refusal::BadWindow(format!("mode must be \"once\" or \"window\", not {m:?}"))
        })?,
    };
    match mode {
        Mode::Once if window_s.is_some() => Err(Refusal::BadWindow(
            "window_s applies to mode \"window\" only".into(),
        )),
        Mode::Once => Ok(Decision::Approve {
            mode,
            window_s: None,
        }),
        Mode::Window => match window_s {
            Some(w) if (1..=limits.window_s_max).contains(&w) => Ok(Decision::Approve {
                mode,
                window_s: Some(w),
            }),
            Some(_) | None => Err(Refusal::BadWindow(format!(
                "mode \"window\" needs window_s between 1 and {}",
                limits.window_s_max
            ))),
        },
    }
}

/// Whether `approver` may decide `g` now.
pub fn may_decide(
    g: &Grant,
    approver: &Caller<'_>,
    now: i64,
    limits: Limits,
) -> Result<(), Refusal> {
    if same_caller(g, approver) {
        return Err(Refusal::OwnRequest);
    }
    if g.status != Status::Pending {
        return Err(Refusal::NotPending(g.status));
    }
    if !pending_live(g, now, limits) {
        return Err(Refusal::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        grant_ttl_s: 900,
        window_s_max: 86400,
    };
    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn alice() -> Caller<'static> {
        Caller {
            iss: "https://idp",
            sub: "alice",
        }
    }

    fn req(id: &str, sub: &str, tool: &str, sha: &str, created_at: i64) -> Grant {
        Grant {
            id: id.into(),
            iss: "https://idp".into(),
            sub: sub.into(),
            tool: tool.into(),
            arguments_sha256: sha.into(),
            status: Status::Pending,
            created_at,
            decided_at: None,
            decided_by: None,
            mode: None,
            window_s: None,
            consumed_at: None,
            note: None,
        }
    }

    fn approved(mut g: Grant, at: i64, mode: Mode, window_s: Option<i64>) -> Grant {
        g.status = Status::Approved;
        g.decided_at = Some(at);
        g.decided_by = Some("bob".into());
        g.mode = Some(mode);
        g.window_s = window_s;
        g
    }

    fn plan(gs: &[Grant], caller: &Caller<'_>, tool: &str, sha: &str, now: i64) -> CheckPlan {
        plan_check(gs, caller, tool, sha, now, L)
    }

    #[test]
    fn nothing_stored_creates_a_request() {
        assert_eq!(plan(&[], &alice(), "rm", SHA_A, 0), CheckPlan::Create);
    }

    #[test]
    fn pending_request_is_reused_until_it_expires() {
        let gs = [req("r1", "alice", "rm", SHA_A, 100)];
        assert_eq!(
            plan(&gs, &alice(), "rm", SHA_A, 500),
            CheckPlan::Pending { id: "r1".into() }
        );
        assert_eq!(
            plan(&gs, &alice(), "rm", SHA_A, 100 + 900),
            CheckPlan::Create
        );
    }

    #[test]
    fn once_grant_is_single_use() {
        let mut g = approved(req("r1", "alice", "rm", SHA_A, 100), 200, Mode::Once, None);
        let p = plan(std::slice::from_ref(&g), &alice(), "rm", SHA_A, 300);
        assert_eq!(
            p,
            CheckPlan::ConsumeOnce {
                id: "r1".into(),
                approved_by: Some("bob".into())
            }
        );
        g.consumed_at = Some(300);
        assert_eq!(plan(&[g], &alice(), "rm", SHA_A, 301), CheckPlan::Create);
    }

    #[test]
    fn once_grant_expires_after_grant_ttl() {
        let g = approved(req("r1", "alice", "rm", SHA_A, 100), 200, Mode::Once, None);
        assert!(matches!(
            plan(std::slice::from_ref(&g), &alice(), "rm", SHA_A, 200 + 899),
            CheckPlan::ConsumeOnce { .. }
        ));
        assert_eq!(
            plan(&[g], &alice(), "rm", SHA_A, 200 + 900),
            CheckPlan::Create
        );
    }

    #[test]
    fn once_grant_is_bound_to_the_arguments_digest() {
        let g = approved(req("r1", "alice", "rm", SHA_A, 100), 200, Mode::Once, None);
        assert_eq!(plan(&[g], &alice(), "rm", SHA_B, 300), CheckPlan::Create);
    }

    #[test]
    fn once_grant_covers_only_its_caller_and_tool() {
        let g = approved(req("r1", "alice", "rm", SHA_A, 100), 200, Mode::Once, None);
        let carol = Caller {
            iss: "https://idp",
            sub: "carol",
        };
        let other_iss = Caller {
            iss: "https://other",
            sub: "alice",
        };
        let gs = [g];
        assert_eq!(plan(&gs, &carol, "rm", SHA_A, 300), CheckPlan::Create);
        assert_eq!(plan(&gs, &other_iss, "rm", SHA_A, 300), CheckPlan::Create);
        assert_eq!(plan(&gs, &alice(), "ls", SHA_A, 300), CheckPlan::Create);
    }

    #[test]
    fn window_covers_caller_and_tool_with_any_arguments_until_it_ends() {
        let g = approved(
            req("r1", "alice", "rm", SHA_A, 100),
            200,
            Mode::Window,
            Some(60),
        );
        let gs = [g];
        for sha in [SHA_A, SHA_B] {
            assert_eq!(
                plan(&gs, &alice(), "rm", sha, 259),
                CheckPlan::Window {
                    id: "r1".into(),
                    approved_by: Some("bob".into())
                }
            );
        }
        // Not other tools, not other callers, not after the window.
        assert_eq!(plan(&gs, &alice(), "ls", SHA_A, 210), CheckPlan::Create);
        let carol = Caller {
            iss: "https://idp",
            sub: "carol",
        };
        assert_eq!(plan(&gs, &carol, "rm", SHA_A, 210), CheckPlan::Create);
        assert_eq!(plan(&gs, &alice(), "rm", SHA_A, 260), CheckPlan::Create);
    }

    #[test]
    fn window_wins_over_a_pending_request() {
        let w = approved(
            req("r1", "alice", "rm", SHA_A, 100),
            200,
            Mode::Window,
            Some(600),
        );
        let p = req("r2", "alice", "rm", SHA_B, 150);
        assert!(matches!(
            plan(&[p, w], &alice(), "rm", SHA_B, 300),
            CheckPlan::Window { .. }
        ));
    }

    #[test]
    fn denial_sticks_for_grant_ttl_then_a_new_request() {
        let mut g = req("r1", "alice", "rm", SHA_A, 100);
        g.status = Status::Denied;
        g.decided_at = Some(200);
        g.decided_by = Some("bob".into());
        g.note = Some("not on prod".into());
        let gs = [g];
        assert_eq!(
            plan(&gs, &alice(), "rm", SHA_A, 1099),
            CheckPlan::Denied {
                id: "r1".into(),
                denied_by: Some("bob".into()),
                note: Some("not on prod".into())
            }
        );
        // Other arguments are another request.
        assert_eq!(plan(&gs, &alice(), "rm", SHA_B, 300), CheckPlan::Create);
        assert_eq!(plan(&gs, &alice(), "rm", SHA_A, 1100), CheckPlan::Create);
        assert_eq!(
            denial_reason(Some("bob"), Some("not on prod")),
            "denied by bob: not on prod"
        );
        assert_eq!(denial_reason(None, None), "denied by an approver");
    }

    #[test]
    fn approval_wins_over_an_older_denial_of_the_same_call() {
        let mut d = req("r1", "alice", "rm", SHA_A, 100);
        d.status = Status::Denied;
        d.decided_at = Some(150);
        let a = approved(req("r2", "alice", "rm", SHA_A, 160), 170, Mode::Once, None);
        assert!(matches!(
            plan(&[d, a], &alice(), "rm", SHA_A, 200),
            CheckPlan::ConsumeOnce { .. }
        ));
    }

    #[test]
    fn nobody_decides_their_own_request() {
        let g = req("r1", "alice", "rm", SHA_A, 100);
        assert_eq!(may_decide(&g, &alice(), 200, L), Err(Refusal::OwnRequest));
        let bob = Caller {
            iss: "https://idp",
            sub: "bob",
        };
        assert_eq!(may_decide(&g, &bob, 200, L), Ok(()));
        // The same sub at another issuer is another person.
        let alice_elsewhere = Caller {
            iss: "https://other",
            sub: "alice",
        };
        assert_eq!(may_decide(&g, &alice_elsewhere, 200, L), Ok(()));
    }

    #[test]
    fn only_a_live_pending_request_is_decided() {
        let bob = Caller {
            iss: "https://idp",
            sub: "bob",
        };
        let g = req("r1", "alice", "rm", SHA_A, 100);
        assert_eq!(may_decide(&g, &bob, 1000, L), Err(Refusal::Expired));
        let a = approved(g, 200, Mode::Once, None);
        assert_eq!(
            may_decide(&a, &bob, 300, L),
            Err(Refusal::NotPending(Status::Approved))
        );
    }

    #[test]
    fn decisions_are_validated() {
        assert_eq!(
            validate_decision(Some("once"), None, Some("ok"), true, L),
            Ok(Decision::Approve {
                mode: Mode::Once,
                window_s: None
            })
        );
        assert_eq!(
            validate_decision(Some("window"), Some(60), None, true, L),
            Ok(Decision::Approve {
                mode: Mode::Window,
                window_s: Some(60)
            })
        );
        for w in [None, Some(0), Some(86401), Some(-5)] {
            assert!(validate_decision(Some("window"), w, None, true, L).is_err());
        }
        assert!(validate_decision(Some("forever"), None, None, true, L).is_err());
        assert!(validate_decision(Some("once"), Some(5), None, true, L).is_err());
        let long = "x".repeat(1001);
        assert_eq!(
            validate_decision(None, None, Some(&long), false, L),
            Err(Refusal::NoteTooLong)
        );
        assert_eq!(
            validate_decision(None, None, Some(&"é".repeat(1000)), false, L),
            Ok(Decision::Deny)
        );
        // A denial carries no approval's terms.
        assert!(validate_decision(Some("window"), None, None, false, L).is_err());
        assert!(validate_decision(None, Some(60), None, false, L).is_err());
    }
}
