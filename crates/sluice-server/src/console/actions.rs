//! The console's POST forms: sign-in and sign-out, create a topic, create a connector, and the
//! connector actions (stop/start, reload, offset reset), which first show a confirmation page
//! and act only when it is submitted. Every form of a session carries its CSRF token. Each
//! change is written to the audit log like the same change through the API (who: the signed-in
//! key's name; the detail says it came from the console).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;
use serde_json::Value as Json;

use super::api::field_names;
use super::pages::sign_in_form;
use super::session::{clear_cookie, set_cookie, Session};
use super::view::{csrf_field, frame, PageError};
use super::Console;
use crate::service::connectors::NewConnector;
use crate::service::topics::NewTopic;
use crate::service::Error;

/// The signed-in key as the API names callers: a stored key by its name, the root by its access
/// id (audit entries, Creator fields).
fn actor(console: &Console, session: &Session) -> String {
    console
        .app
        .accounts
        .keys()
        .and_then(|k| k.get(&session.access_id))
        .map_or_else(|| session.access_id.clone(), |k| k.name)
}

/// Appends a console change to the audit log, like the same change through the API.
async fn audit(console: &Console, session: &Session, what: &str, resource: &str) {
    let who = actor(console, session);
    crate::accounts::audit::record(&console.app.catalog.meta, &who, what, resource, "console")
        .await;
}

/// The message a wrong key pair gets (it does not tell which half was wrong).
pub const SIGN_IN_REFUSED: &str = "Sign-in refused: the AccessId or AccessKey is wrong.";

#[derive(Deserialize)]
pub struct SignIn {
    access_id: String,
    access_key: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("access_id", &self.access_id)
            .field("access_key", &"***")
            .finish()
    }
}

pub async fn sign_in(State(console): State<Console>, Form(form): Form<SignIn>) -> Response {
    let id = form.access_id.trim();
    if !console.app.accounts.key_matches(id, &form.access_key) {
        tracing::info!(access_id = %id, "console sign-in refused");
        return (
            StatusCode::UNAUTHORIZED,
            sign_in_form(Some(SIGN_IN_REFUSED)),
        )
            .into_response();
    }
    let token = console.sessions.open(id);
    (
        [(header::SET_COOKIE, set_cookie(&token, console.secure))],
        Redirect::to("/console/"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// Refuses a form whose CSRF token is not the session's.
fn check_csrf(session: &Session, given: &str) -> Result<(), PageError> {
    if session.csrf_ok(given) {
        Ok(())
    } else {
        Err(PageError(Error::Unauthorized(
            "the form's CSRF token does not match this session; reload the page and try again"
                .into(),
        )))
    }
}

pub async fn sign_out(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    headers: axum::http::HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    console.sessions.close(&headers);
    Ok((
        [(header::SET_COOKIE, clear_cookie(console.secure))],
        Redirect::to("/console/login"),
    )
        .into_response())
}

fn whole_number(field: &str, text: &str, default: i64) -> Result<i64, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(default);
    }
    text.parse()
        .map_err(|_| Error::InvalidParameter(format!("{field} {text:?} is not a whole number")))
}

#[derive(Deserialize)]
pub struct CreateTopic {
    csrf: String,
    name: String,
    #[serde(default)]
    shard_count: String,
    #[serde(default)]
    lifecycle_days: String,
    record_type: String,
    #[serde(default)]
    schema: String,
    #[serde(default)]
    comment: String,
}

pub async fn create_topic(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(project): Path<String>,
    Form(form): Form<CreateTopic>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    let name = form.name.trim();
    let new = NewTopic {
        shard_count: whole_number("Shards", &form.shard_count, 1)?,
        lifecycle_days: whole_number("Lifecycle", &form.lifecycle_days, 7)?,
        record_type: form.record_type.clone(),
        schema: Some(form.schema.trim().to_string()).filter(|s| !s.is_empty()),
        comment: form.comment.clone(),
        expand_mode: None,
    };
    console
        .app
        .catalog
        .create_topic(&project, name, new)
        .await?;
    audit(
        &console,
        &session,
        "console: create topic",
        &format!("{project}/{name}"),
    )
    .await;
    Ok(Redirect::to(&format!("/console/projects/{project}/topics/{name}")).into_response())
}

#[derive(Deserialize)]
pub struct CreateConnector {
    csrf: String,
    kind: String,
    #[serde(default)]
    columns: String,
    #[serde(default)]
    start_time: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    database: String,
    #[serde(default)]
    table: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    ignore: Option<String>,
    #[serde(default)]
    config_json: String,
}

impl CreateConnector {
    /// The wire config: the JSON textarea when filled, else the SINK_MYSQL fields. Either way
    /// the service checks it against the connector type's typed config.
    fn config(&self) -> Result<Json, Error> {
        let text = self.config_json.trim();
        if !text.is_empty() {
            let value: Json = serde_json::from_str(text).map_err(|e| {
                Error::InvalidParameter(format!("the config is not valid JSON: {e}"))
            })?;
            if !value.is_object() {
                return Err(Error::InvalidParameter(
                    "the config must be a JSON object".into(),
                ));
            }
            return Ok(value);
        }
        Ok(serde_json::json!({
            "Host": self.host.trim(),
            "Port": self.port.trim(),
            "Database": self.database.trim(),
            "Table": self.table.trim(),
            "User": self.user.trim(),
            "Password": self.password,
            "Ignore": self.ignore.is_some().to_string(),
        }))
    }
}

pub async fn create_connector(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, topic)): Path<(String, String)>,
    Form(form): Form<CreateConnector>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    let catalog = &console.app.catalog;
    let t = catalog.topic(&project, &topic)?;
    let mut columns: Vec<String> = form
        .columns
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    if columns.is_empty() {
        columns = field_names(&t);
    }
    let new = NewConnector {
        kind: form.kind.trim().to_string(),
        column_fields: columns,
        config: form.config()?,
        start_time: whole_number("Start time", &form.start_time, -1)?,
        creator: actor(&console, &session),
    };
    let id = catalog.create_connector(&project, &topic, new).await?;
    audit(
        &console,
        &session,
        "console: create connector",
        &format!("{project}/{topic}/connectors/{id}"),
    )
    .await;
    Ok(Redirect::to(&format!(
        "/console/projects/{project}/topics/{topic}/connectors/{id}"
    ))
    .into_response())
}

/// A connector action's form: which action, its fields, and whether it was confirmed.
#[derive(Deserialize)]
pub struct ConnectorAction {
    csrf: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    shard: String,
    #[serde(default)]
    sequence: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    confirm: String,
}

/// The confirmation page: what is about to happen, and the same form again with `confirm=yes`.
fn confirmation(
    session: &Session,
    action: &str,
    what: String,
    form: &ConnectorAction,
    back: &str,
) -> Response {
    frame(
        "Confirm",
        Some(session),
        html! {
            form.card #confirm-form method="post" action=(action) {
                p #confirm-text { (what) }
                (csrf_field(session))
                input type="hidden" name="state" value=(form.state);
                input type="hidden" name="shard" value=(form.shard);
                input type="hidden" name="sequence" value=(form.sequence);
                input type="hidden" name="time" value=(form.time);
                input type="hidden" name="confirm" value="yes";
                button #confirm type="submit" { "Confirm" }
                " "
                a #cancel href=(back) { "Cancel" }
            }
        },
    )
    .into_response()
}

fn connector_page(project: &str, topic: &str, id: &str) -> String {
    format!("/console/projects/{project}/topics/{topic}/connectors/{id}")
}

fn shard_words(shard: &str) -> String {
    if shard.trim().is_empty() {
        "every shard".into()
    } else {
        format!("shard {}", shard.trim())
    }
}

pub async fn connector_state(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, topic, id)): Path<(String, String, String)>,
    Form(form): Form<ConnectorAction>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    let page = connector_page(&project, &topic, &id);
    if form.confirm != "yes" {
        let verb = if form.state.eq_ignore_ascii_case("CONNECTOR_STOPPED") {
            "Stop"
        } else {
            "Start"
        };
        let what = format!("{verb} connector {id}?");
        return Ok(confirmation(
            &session,
            &format!("{page}/state"),
            what,
            &form,
            &page,
        ));
    }
    console
        .app
        .catalog
        .update_connector_state(&project, &topic, &id, &form.state)
        .await?;
    audit(
        &console,
        &session,
        &format!("console: connector state {}", form.state.trim()),
        &format!("{project}/{topic}/connectors/{id}"),
    )
    .await;
    Ok(Redirect::to(&page).into_response())
}

pub async fn connector_reload(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, topic, id)): Path<(String, String, String)>,
    Form(form): Form<ConnectorAction>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    let page = connector_page(&project, &topic, &id);
    if form.confirm != "yes" {
        let what = format!(
            "Reload connector {id} on {} (its tasks restart from their checkpoints)?",
            shard_words(&form.shard)
        );
        return Ok(confirmation(
            &session,
            &format!("{page}/reload"),
            what,
            &form,
            &page,
        ));
    }
    let shard = Some(form.shard.as_str()).filter(|s| !s.trim().is_empty());
    console
        .app
        .catalog
        .reload_connector(&project, &topic, &id, shard)
        .await?;
    audit(
        &console,
        &session,
        "console: reload connector",
        &format!("{project}/{topic}/connectors/{id}"),
    )
    .await;
    Ok(Redirect::to(&page).into_response())
}

pub async fn connector_offset(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, topic, id)): Path<(String, String, String)>,
    Form(form): Form<ConnectorAction>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    let page = connector_page(&project, &topic, &id);
    let sequence = whole_number("Sequence", &form.sequence, -1)?;
    let time = whole_number("Time", &form.time, -1)?;
    if sequence < 0 && time < 0 {
        return Err(PageError(Error::InvalidParameter(
            "give a sequence or a time (ms) to reset the offset to".into(),
        )));
    }
    if form.confirm != "yes" {
        let to = if sequence >= 0 {
            format!("sequence {sequence}")
        } else {
            format!("the first record at or after {time} ms")
        };
        let what = format!(
            "Reset connector {id}'s offset on {} to {to}?",
            shard_words(&form.shard)
        );
        return Ok(confirmation(
            &session,
            &format!("{page}/offset"),
            what,
            &form,
            &page,
        ));
    }
    let shard = Some(form.shard.as_str()).filter(|s| !s.trim().is_empty());
    console
        .app
        .catalog
        .update_connector_offset(
            &project,
            &topic,
            &id,
            shard,
            Some(sequence).filter(|s| *s >= 0),
            Some(time).filter(|t| *t >= 0),
        )
        .await?;
    audit(
        &console,
        &session,
        "console: connector offset",
        &format!("{project}/{topic}/connectors/{id}"),
    )
    .await;
    Ok(Redirect::to(&page).into_response())
}
