//! Policies: what a key may do. A grant is `ACTION:PROJECT/TOPIC` with `*` wildcards in either
//! part; `project/*` is a project-level grant. [`required`] is the one table that says what each
//! route needs, so every handler is checked before it runs (by the authentication middleware).

use std::fmt;

use axum::http::Method;

/// What a grant allows. `Admin` allows every action on its resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Topics,
    Connectors,
    Subscriptions,
    Admin,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Read,
        Action::Write,
        Action::Topics,
        Action::Connectors,
        Action::Subscriptions,
        Action::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Topics => "topics",
            Action::Connectors => "connectors",
            Action::Subscriptions => "subscriptions",
            Action::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }
}

/// A project, or one topic of it (`topic` None: the project itself, written `project/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub project: String,
    pub topic: Option<String>,
}

impl Resource {
    pub fn project(p: &str) -> Resource {
        Resource {
            project: p.to_string(),
            topic: None,
        }
    }
    pub fn topic(p: &str, t: &str) -> Resource {
        Resource {
            project: p.to_string(),
            topic: Some(t.to_string()),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.project,
            self.topic.as_deref().unwrap_or("*")
        )
    }
}

/// One `ACTION:PROJECT/TOPIC` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub action: Action,
    pub project: String,
    pub topic: String,
}

/// Why a grant string was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "grant {0:?} is not ACTION:PROJECT/TOPIC with ACTION one of read, write, topics, \
     connectors, subscriptions, admin"
)]
pub struct BadGrant(pub String);

impl Grant {
    pub fn parse(s: &str) -> Result<Grant, BadGrant> {
        let bad = || BadGrant(s.to_string());
        let (action, resource) = s.split_once(':').ok_or_else(bad)?;
        let action = Action::parse(action.trim()).ok_or_else(bad)?;
        let (project, topic) = resource.trim().split_once('/').ok_or_else(bad)?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*')
        };
        if !ok(project) || !ok(topic) {
            return Err(bad());
        }
        Ok(Grant {
            action,
            project: project.to_ascii_lowercase(),
            topic: topic.to_ascii_lowercase(),
        })
    }

    fn allows_action(&self, action: Action) -> bool {
        self.action == action || self.action == Action::Admin
    }

    /// Whether the grant's resource pattern covers `r` (a project-level `r` needs `project/*`).
    fn covers(&self, r: &Resource) -> bool {
        glob(&self.project, &r.project)
            && match &r.topic {
                Some(t) => glob(&self.topic, t),
                None => self.topic == "*",
            }
    }

    /// Whether the grant touches `r` at all (a project-level `r`: any topic of the project).
    fn touches(&self, r: &Resource) -> bool {
        glob(&self.project, &r.project) && r.topic.as_deref().is_none_or(|t| glob(&self.topic, t))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.action.name(), self.project, self.topic)
    }
}

/// `*` matches any run of characters; names compare without regard to ASCII case.
fn glob(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    if !name.ends_with(last) {
        return false;
    }
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any valid key.
    Signed,
    /// Some grant on the resource, whatever its action (reading metadata).
    Any(Resource),
    /// Every one of these actions on the resource.
    All(Vec<Action>, Resource),
    /// Key management and the audit log: the root, or `admin:*/*`.
    KeyAdmin,
}

/// A change a handler reports once it has read the body: the need it was checked against
/// (None: the one the route needed) and the action.
pub type LateAudit = (Option<Need>, String);

/// Who signed a request: the root (every right) or a stored key with its grants.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name (the root: its access id, as Creator fields always showed).
    pub name: String,
    /// None: the root.
    pub grants: Option<Vec<Grant>>,
    /// What a handler learnt from the body makes the request a management change (a JSON
    /// split, say), for the middleware to audit.
    pub late_audit: std::sync::Arc<parking_lot::Mutex<Option<LateAudit>>>,
}

impl Caller {
    /// A stored key as a caller (its grants).
    pub fn of_key(key: &super::keys::LiveKey) -> Caller {
        Caller {
            name: key.name.clone(),
            grants: Some(key.grants.clone()),
            late_audit: Default::default(),
        }
    }

    /// Ok, or the message of the refusal, naming the missing action and resource.
    pub fn check(&self, need: &Need) -> Result<(), String> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        match need {
            Need::Signed => Ok(()),
            Need::Any(r) => {
                if grants.iter().any(|g| g.touches(r)) {
                    Ok(())
                } else {
                    Err(format!(
                        "key {:?} lacks permission read:{r} (any action on {r} would do)",
                        self.name
                    ))
                }
            }
            Need::All(actions, r) => {
                for a in actions {
                    if !grants.iter().any(|g| g.allows_action(*a) && g.covers(r)) {
                        return Err(format!(
                            "key {:?} lacks permission {}:{r}",
                            self.name,
                            a.name()
                        ));
                    }
                }
                Ok(())
            }
            Need::KeyAdmin => {
                let all = Resource::topic("*", "*");
                if grants
                    .iter()
                    .any(|g| g.action == Action::Admin && g.project == "*" && g.topic == "*")
                {
                    Ok(())
                } else {
                    Err(format!(
                        "key {:?} lacks permission admin:{all} (key management)",
                        self.name
                    ))
                }
            }
        }
    }
}

fn all(actions: &[Action], r: Resource) -> Need {
    Need::All(actions.to_vec(), r)
}

/// What `method path` needs; `action` is the request's action where known before the body is
/// read (`x-datahub-request-action`, or a JSON body's `Action` checked again by the handler).
pub fn required(method: &Method, path: &str, action: Option<&str>) -> Need {
    use Action::*;
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = method == Method::GET;
    let action = action.map(str::to_ascii_lowercase);
    match seg.as_slice() {
        ["accounts", ..] => Need::KeyAdmin,
        ["projects", p] if get => Need::Any(Resource::project(p)),
        ["projects", p] => all(&[Admin], Resource::project(p)),
        ["projects", p, "topics"] => Need::Any(Resource::project(p)),
        ["projects", p, "topics", t] if get => Need::Any(Resource::topic(p, t)),
        ["projects", p, "topics", t] => all(&[Topics], Resource::topic(p, t)),
        ["projects", p, "topics", t, "shards"] if !get => match action.as_deref() {
            Some("pub") => all(&[Write], Resource::topic(p, t)),
            Some("merge" | "split" | "extend") => all(&[Topics], Resource::topic(p, t)),
            _ => Need::Any(Resource::topic(p, t)),
        },
        ["projects", p, "topics", t, "shards", _] if !get => match action.as_deref() {
            Some("pub") => all(&[Write], Resource::topic(p, t)),
            Some("sub" | "cursor" | "meter") => all(&[Read], Resource::topic(p, t)),
            _ => Need::Any(Resource::topic(p, t)),
        },
        ["projects", p, "topics", t, "connectors", ..] if !get => {
            all(&[Connectors], Resource::topic(p, t))
        }
        ["projects", p, "topics", t, "subscriptions"] => {
            all(&[Subscriptions], Resource::topic(p, t))
        }
        ["projects", p, "topics", t, "subscriptions", _] if method == Method::POST => {
            all(&[Subscriptions, Read], Resource::topic(p, t))
        }
        ["projects", p, "topics", t, "subscriptions", _, "offsets"] if method == Method::POST => {
            all(&[Subscriptions, Read], Resource::topic(p, t))
        }
        ["projects", p, "topics", t, "subscriptions", ..] if !get => {
            all(&[Subscriptions], Resource::topic(p, t))
        }
        ["projects", p, "topics", t, ..] => Need::Any(Resource::topic(p, t)),
        _ => Need::Signed,
    }
}

/// What a JSON `Action` of a POST on `.../shards` or `.../shards/{id}` needs, checked by the
/// handler once the body is read.
pub fn required_for_shard_action(project: &str, topic: &str, action: &str) -> Need {
    let r = Resource::topic(project, topic);
    match action.to_ascii_lowercase().as_str() {
        "pub" => all(&[Action::Write], r),
        "sub" | "cursor" | "meter" => all(&[Action::Read], r),
        "" => Need::Any(r),
        _ => all(&[Action::Topics], r),
    }
}

/// Whether only the handler knows, from the JSON body's `Action`, if `method path` is a
/// management change: the middleware then audits it only if the handler reports it
/// (`accounts::audit_unless_routine`). Topic actions (schema reads and changes), connector
/// actions (status and changes), the subscriptions collection (list or create) and offset
/// PUTs (commit or reset).
pub fn body_decides(method: &Method, path: &str) -> bool {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["projects", _, "topics", _]
        | ["projects", _, "topics", _, "connectors", _]
        | ["projects", _, "topics", _, "subscriptions"] => method == Method::POST,
        ["projects", _, "topics", _, "subscriptions", _, "offsets"] => method == Method::PUT,
        _ => false,
    }
}

/// Whether a request that passed `need` may change management state (and so is audited):
/// routine record traffic, consumer-group work and offset commits are not.
pub fn is_management(method: &Method, need: &Need) -> bool {
    match need {
        _ if method == Method::GET => false,
        Need::KeyAdmin => true,
        Need::All(actions, _) => {
            !actions.contains(&Action::Read)
                && !actions.contains(&Action::Write)
                && !actions.is_empty()
        }
        Need::Signed | Need::Any(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn t(p: &str, t: &str) -> Resource {
        Resource::topic(p, t)
    }

    #[test]
    fn every_route_needs_what_the_issue_says() {
        let post = Method::POST;
        let table: Vec<(Method, &str, Option<&str>, Need)> = vec![
            (Method::GET, "/projects", None, Need::Signed),
            (
                Method::GET,
                "/projects/p",
                None,
                Need::Any(Resource::project("p")),
            ),
            (
                post.clone(),
                "/projects/p",
                None,
                all(&[Admin], Resource::project("p")),
            ),
            (
                Method::DELETE,
                "/projects/p",
                None,
                all(&[Admin], Resource::project("p")),
            ),
            (
                Method::GET,
                "/projects/p/topics",
                None,
                Need::Any(Resource::project("p")),
            ),
            (
                Method::GET,
                "/projects/p/topics/t",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t",
                None,
                all(&[Topics], t("p", "t")),
            ),
            (
                Method::PUT,
                "/projects/p/topics/t",
                None,
                all(&[Topics], t("p", "t")),
            ),
            (
                Method::DELETE,
                "/projects/p/topics/t",
                None,
                all(&[Topics], t("p", "t")),
            ),
            (
                Method::GET,
                "/projects/p/topics/t/shards",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/shards",
                Some("split"),
                all(&[Topics], t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/shards",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/shards/0",
                Some("pub"),
                all(&[Write], t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/shards/0",
                Some("sub"),
                all(&[Read], t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/shards/0",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                Method::GET,
                "/projects/p/topics/t/connectors",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/connectors/c",
                None,
                all(&[Connectors], t("p", "t")),
            ),
            (
                Method::DELETE,
                "/projects/p/topics/t/connectors/c",
                None,
                all(&[Connectors], t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/subscriptions",
                None,
                all(&[Subscriptions], t("p", "t")),
            ),
            (
                Method::GET,
                "/projects/p/topics/t/subscriptions/s",
                None,
                Need::Any(t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/subscriptions/s",
                None,
                all(&[Subscriptions, Read], t("p", "t")),
            ),
            (
                Method::PUT,
                "/projects/p/topics/t/subscriptions/s",
                None,
                all(&[Subscriptions], t("p", "t")),
            ),
            (
                Method::DELETE,
                "/projects/p/topics/t/subscriptions/s",
                None,
                all(&[Subscriptions], t("p", "t")),
            ),
            (
                post.clone(),
                "/projects/p/topics/t/subscriptions/s/offsets",
                None,
                all(&[Subscriptions, Read], t("p", "t")),
            ),
            (
                Method::PUT,
                "/projects/p/topics/t/subscriptions/s/offsets",
                None,
                all(&[Subscriptions], t("p", "t")),
            ),
            (Method::GET, "/accounts/keys", None, Need::KeyAdmin),
            (Method::GET, "/accounts/audit", None, Need::KeyAdmin),
        ];
        for (method, path, action, need) in table {
            assert_eq!(
                required(&method, path, action),
                need,
                "{method} {path} {action:?}"
            );
        }
    }

    fn caller(grants: &[&str]) -> Caller {
        Caller {
            name: "k".into(),
            grants: Some(grants.iter().map(|g| Grant::parse(g).unwrap()).collect()),
            late_audit: Default::default(),
        }
    }

    #[test]
    fn grants_match_with_wildcards_and_refusals_name_action_and_resource() {
        let reader = caller(&["read:p/t"]);
        assert!(reader.check(&all(&[Read], t("p", "t"))).is_ok());
        assert!(reader.check(&all(&[Read], t("P", "T"))).is_ok());
        let e = reader.check(&all(&[Write], t("p", "t"))).unwrap_err();
        assert!(e.contains("write:p/t"), "{e}");
        let e = reader.check(&all(&[Read], t("p", "u"))).unwrap_err();
        assert!(e.contains("read:p/u"), "{e}");
        assert!(reader.check(&Need::Any(Resource::project("p"))).is_ok());
        assert!(reader.check(&Need::Any(Resource::project("q"))).is_err());
        assert!(reader
            .check(&all(&[Admin], Resource::project("p")))
            .is_err());
        assert!(reader.check(&Need::KeyAdmin).is_err());

        let wide = caller(&["write:p/logs_*", "admin:q/*"]);
        assert!(wide.check(&all(&[Write], t("p", "logs_a"))).is_ok());
        assert!(wide.check(&all(&[Write], t("p", "metrics"))).is_err());
        assert!(wide.check(&all(&[Connectors], t("q", "x"))).is_ok());
        assert!(wide.check(&all(&[Admin], Resource::project("q"))).is_ok());
        assert!(wide.check(&Need::KeyAdmin).is_err());
        assert!(caller(&["admin:*/*"]).check(&Need::KeyAdmin).is_ok());

        let root = Caller {
            name: "root".into(),
            grants: None,
            late_audit: Default::default(),
        };
        assert!(root.check(&Need::KeyAdmin).is_ok());
        for bad in [
            "read",
            "read:p",
            "fly:p/t",
            "read:p/t/u",
            "read:/t",
            "read:p q/t",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_shard_actions_need_what_they_do() {
        let need = |a: &str| required_for_shard_action("p", "t", a);
        assert_eq!(need("pub"), all(&[Write], t("p", "t")));
        assert_eq!(need("SUB"), all(&[Read], t("p", "t")));
        assert_eq!(need("cursor"), all(&[Read], t("p", "t")));
        assert_eq!(need("meter"), all(&[Read], t("p", "t")));
        assert_eq!(need("split"), all(&[Topics], t("p", "t")));
        assert_eq!(need("merge"), all(&[Topics], t("p", "t")));
        assert_eq!(need("extend"), all(&[Topics], t("p", "t")));
    }

    #[test]
    fn only_routes_whose_body_names_the_action_wait_for_the_handler() {
        let p = "/projects/p/topics/t";
        assert!(body_decides(&Method::POST, p));
        assert!(!body_decides(&Method::PUT, p));
        assert!(!body_decides(&Method::DELETE, p));
        assert!(body_decides(&Method::POST, &format!("{p}/connectors/c")));
        assert!(!body_decides(&Method::DELETE, &format!("{p}/connectors/c")));
        assert!(body_decides(&Method::POST, &format!("{p}/subscriptions")));
        assert!(!body_decides(&Method::PUT, &format!("{p}/subscriptions/s")));
        assert!(body_decides(
            &Method::PUT,
            &format!("{p}/subscriptions/s/offsets")
        ));
        assert!(!body_decides(&Method::POST, "/projects/p"));
        assert!(!body_decides(&Method::POST, "/accounts/keys"));
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a*", "a"));
        assert!(!glob("a*c", "ab"));
        assert!(glob("*x*", "yxy"));
        assert!(!glob("abc", "abcd"));
    }
}
