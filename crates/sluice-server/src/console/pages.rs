//! The console's pages (GET): sign-in, hub overview, project, topic and connector. Each reads
//! the service layer directly and renders HTML; the JS then refreshes the live parts from `api`.

use axum::extract::{Path, State};
use axum::response::Html;
use axum::Extension;
use maud::{html, Markup};
use sluice_proto::hashkey;

use super::api::{connector_progress, field_names, hub_totals};
use super::session::Session;
use super::view::{bytes, csrf_field, frame, mask_secrets, time_ms, PageError};
use super::Console;
use crate::service::catalog::Topic;

type Page = Result<Html<String>, PageError>;

/// The sign-in form, with a refusal message when one is given.
pub fn sign_in_form(message: Option<&str>) -> Html<String> {
    frame(
        "Sign in",
        None,
        html! {
            @if let Some(m) = message { div.error #sign-in-error { (m) } }
            form.card #sign-in method="post" action="/console/login" {
                label { "AccessId" input #access-id name="access_id" autocomplete="username" required; }
                label { "AccessKey" input #access-key type="password" name="access_key" autocomplete="current-password" required; }
                button #sign-in-button type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn sign_in() -> Html<String> {
    sign_in_form(None)
}

pub async fn overview(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Page {
    let catalog = &console.app.catalog;
    let totals = hub_totals(catalog);
    let projects: Vec<(String, usize)> = catalog
        .list_projects()
        .into_iter()
        .map(|p| {
            let n = catalog.list_topics(&p).map_or(0, |t| t.len());
            (p, n)
        })
        .collect();
    Ok(frame(
        "Hub overview",
        Some(&session),
        html! {
            section.stats #hub-stats data-poll="/console/api/overview" {
                div { span.label { "Projects" } span #stat-projects { (totals["projects"]) } }
                div { span.label { "Topics" } span #stat-topics { (totals["topics"]) } }
                div { span.label { "Records written" } span #stat-records { (totals["records"]) } }
                div { span.label { "Storage" } span #stat-storage { (bytes(totals["bytes"].as_u64().unwrap_or(0))) } }
                div { span.label { "Ingest rate" } span #stat-ingest { "measuring…" } }
            }
            h2 { "Projects" }
            table #projects {
                thead { tr { th { "Project" } th { "Topics" } } }
                tbody {
                    @for (p, n) in &projects {
                        tr { td { a href={ "/console/projects/" (p) } { (p) } } td { (n) } }
                    }
                }
            }
            @if projects.is_empty() { p.empty { "No projects yet (create one with an SDK or the CLI)." } }
        },
    ))
}

fn schema_text(topic: &Topic) -> Markup {
    match topic.meta.read().current_schema() {
        None => html! { span.muted { "BLOB" } },
        Some(schema) => html! {
            ul.schema {
                @for f in &schema.fields {
                    li { code { (f.name) } " " span.type { (f.field_type.name()) }
                         @if f.not_null { " not null" } }
                }
            }
        },
    }
}

pub async fn project(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(project): Path<String>,
) -> Page {
    let catalog = &console.app.catalog;
    let row = catalog.get_project(&project)?;
    let mut topics = Vec::new();
    for name in catalog.list_topics(&project)? {
        topics.push(catalog.topic(&project, &name)?);
    }
    Ok(frame(
        &format!("Project {}", row.name),
        Some(&session),
        html! {
            p.crumbs { a href="/console/" { "Hub" } " / " (row.name) }
            @if !row.comment.is_empty() { p.muted { (row.comment) } }
            h2 { "Topics" }
            table #topics {
                thead { tr { th { "Topic" } th { "Type" } th { "Shards" } th { "Lifecycle (days)" } th { "Schema" } th { "Comment" } } }
                tbody {
                    @for t in &topics {
                        @let meta = t.meta.read().clone();
                        tr {
                            td { a href={ "/console/projects/" (row.name) "/topics/" (t.name) } { (t.name) } }
                            td { (t.record_type.name()) }
                            td { (t.shards.read().len()) }
                            td { (meta.lifecycle_days) }
                            td { (schema_text(t)) }
                            td { (meta.comment) }
                        }
                    }
                }
            }
            h2 { "Create a topic" }
            form.card #create-topic method="post" action={ "/console/projects/" (row.name) "/topics" } {
                (csrf_field(&session))
                label { "Name" input #topic-name name="name" required; }
                label { "Shards" input #topic-shards name="shard_count" value="1" inputmode="numeric"; }
                label { "Lifecycle (days)" input name="lifecycle_days" value="7" inputmode="numeric"; }
                label { "Record type"
                    select #topic-type name="record_type" { option value="TUPLE" { "TUPLE" } option value="BLOB" { "BLOB" } }
                }
                label.wide { "Schema (TUPLE; DataHub JSON)"
                    textarea #topic-schema name="schema" rows="4"
                        placeholder=r#"{"fields":[{"name":"id","type":"BIGINT"},{"name":"name","type":"STRING"}]}"# {}
                }
                label.wide { "Comment" input name="comment"; }
                button #create-topic-button type="submit" { "Create topic" }
            }
        },
    ))
}

/// Records a subscription has not read yet on one shard.
fn subscription_lag(topic: &Topic, shard: u32, sequence: i64) -> u64 {
    topic.shard(shard).map_or(0, |s| {
        let next = s.log.next_seq();
        let read_to = if sequence >= 0 {
            sequence as u64 + 1
        } else {
            s.log.first_seq()
        };
        next.saturating_sub(read_to.max(s.log.first_seq()))
    })
}

pub async fn topic(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, name)): Path<(String, String)>,
) -> Page {
    let catalog = &console.app.catalog;
    let topic = catalog.topic(&project, &name)?;
    let shards = catalog.list_shards(&project, &name)?;
    let (_, subs) = catalog.list_subscriptions(&project, &name, "", 1, 1000)?;
    let mut sub_rows = Vec::new();
    for s in &subs {
        let offsets = catalog
            .get_offsets(&project, &name, &s.sub_id, None)
            .await?;
        let lags: Vec<(u32, u64)> = offsets
            .iter()
            .map(|(shard, o)| (*shard, subscription_lag(&topic, *shard, o.sequence)))
            .collect();
        sub_rows.push((s, lags));
    }
    let mut connectors = Vec::new();
    for id in catalog.list_connectors(&project, &name).await? {
        connectors.push(catalog.get_connector(&project, &name, &id).await?);
    }
    let base = format!("/console/projects/{}/topics/{}", topic.project, topic.name);
    let api = format!(
        "/console/api/projects/{}/topics/{}/records",
        topic.project, topic.name
    );
    let fields = field_names(&topic);
    Ok(frame(
        &format!("Topic {}", topic.name),
        Some(&session),
        html! {
            p.crumbs { a href="/console/" { "Hub" } " / " a href={ "/console/projects/" (topic.project) } { (topic.project) } " / " (topic.name) }
            p { (topic.record_type.name()) " topic, lifecycle " (topic.meta.read().lifecycle_days) " days" }
            (schema_text(&topic))
            h2 { "Shards" }
            table #shards {
                thead { tr { th { "Shard" } th { "State" } th { "Begin key" } th { "End key" } th { "Parents" } th { "Sequences" } th { "Size" } th { "Created" } } }
                tbody {
                    @for s in &shards {
                        @let log = topic.shard(s.id).map(|sh| (sh.log.first_seq(), sh.log.next_seq(), sh.log.size_bytes()));
                        tr data-shard=(s.id) {
                            td { (s.id) }
                            td.state { (s.meta.state.name()) }
                            td { code { (hashkey::format_key(s.meta.begin_key)) } }
                            td { code { (hashkey::format_key(s.meta.end_key)) } }
                            td { (s.meta.parents.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) }
                            td.seqs { @if let Some((first, next, _)) = log { (first) " – " (next) } }
                            td { @if let Some((_, _, size)) = log { (bytes(size)) } }
                            td { (time_ms(s.meta.create_time * 1000)) }
                        }
                    }
                }
            }
            h2 { "Sample records" }
            form.card #sample-form data-api=(api) {
                label { "Shard" select #sample-shard name="shard" { @for s in &shards { option value=(s.id) { (s.id) } } } }
                label { "From"
                    select #sample-kind name="kind" {
                        option value="OLDEST" { "OLDEST" } option value="LATEST" { "LATEST" }
                        option value="SEQUENCE" { "sequence" } option value="SYSTEM_TIME" { "time (ms)" }
                    }
                }
                label { "Sequence / time" input #sample-value name="value"; }
                button #sample-button type="submit" { "Sample" }
                label.check { input #follow type="checkbox"; " Follow" }
            }
            div #sample-status .muted {}
            table #records {
                thead { tr { th { "Sequence" } th { "Written" } @for f in &fields { th { (f) } } } }
                tbody {}
            }
            h2 { "Subscriptions" }
            table #subscriptions {
                thead { tr { th { "Subscription" } th { "State" } th { "Comment" } th { "Lag (records) per shard" } th { "Total lag" } } }
                tbody {
                    @for (s, lags) in &sub_rows {
                        tr {
                            td { code { (s.sub_id) } }
                            td { @if s.meta.state == 1 { "online" } @else { "offline" } }
                            td { (s.meta.comment) }
                            td { @for (shard, lag) in lags { span.pill { (shard) ": " (lag) } " " } }
                            td.lag { (lags.iter().map(|(_, l)| l).sum::<u64>()) }
                        }
                    }
                }
            }
            h2 { "Connectors" }
            table #connectors {
                thead { tr { th { "Connector" } th { "Type" } th { "State" } th { "Columns" } } }
                tbody {
                    @for c in &connectors {
                        tr {
                            td { a href={ (base) "/connectors/" (c.row.connector_id) } { (c.row.connector_id) } }
                            td { (c.row.kind) }
                            td.state { (c.row.state) }
                            td { (c.row.column_fields.join(", ")) }
                        }
                    }
                }
            }
            h2 { "Create a connector" }
            form.card #create-connector method="post" action={ (base) "/connectors" } {
                (csrf_field(&session))
                label { "Type"
                    select #connector-type name="kind" {
                        @for k in ["SINK_MYSQL", "SINK_HOLOGRES", "SINK_ES", "SINK_FC", "SINK_OSS", "SINK_ODPS", "SINK_DATAHUB", "SINK_ADS", "SINK_OTS"] {
                            option value=(k) { (k) }
                        }
                    }
                }
                label.wide { "Columns (comma-separated; empty: all fields)" input #connector-columns name="columns" value=(fields.join(",")); }
                label { "Start time (ms, -1: oldest)" input name="start_time" value="-1"; }
                fieldset #mysql-fields {
                    legend { "SINK_MYSQL" }
                    label { "Host" input #mysql-host name="host"; }
                    label { "Port" input #mysql-port name="port" value="3306"; }
                    label { "Database" input #mysql-database name="database"; }
                    label { "Table" input #mysql-table name="table"; }
                    label { "User" input #mysql-user name="user" autocomplete="off"; }
                    label { "Password" input #mysql-password type="password" name="password" autocomplete="new-password"; }
                    label.check { input name="ignore" type="checkbox" value="true"; " Ignore duplicates (else replace)" }
                }
                label.wide { "Or the config as JSON (any type; overrides the fields above)"
                    textarea #connector-json name="config_json" rows="4" placeholder=r#"{"Host":"db","Port":"3306",...}"# {}
                }
                button #create-connector-button type="submit" { "Create connector" }
            }
        },
    ))
}

pub async fn connector(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Page {
    let catalog = &console.app.catalog;
    let topic = catalog.topic(&project, &name)?;
    let view = catalog.get_connector(&project, &name, &id).await?;
    let progress = connector_progress(catalog, &project, &name, &id).await?;
    let config = mask_secrets(&view.config);
    let base = format!(
        "/console/projects/{}/topics/{}/connectors/{}",
        topic.project, topic.name, view.row.connector_id
    );
    let api = format!(
        "/console/api/projects/{}/topics/{}/connectors/{}/status",
        topic.project, topic.name, view.row.connector_id
    );
    let running = view.row.state == crate::service::connectors::RUNNING;
    let empty = Vec::new();
    let shard_rows = progress["shards"].as_array().unwrap_or(&empty);
    Ok(frame(
        &format!("Connector {}", view.row.connector_id),
        Some(&session),
        html! {
            p.crumbs {
                a href="/console/" { "Hub" } " / "
                a href={ "/console/projects/" (topic.project) } { (topic.project) } " / "
                a href={ "/console/projects/" (topic.project) "/topics/" (topic.name) } { (topic.name) } " / "
                (view.row.connector_id)
            }
            section.stats #connector-summary data-poll=(api) {
                div { span.label { "Type" } span { (view.row.kind) } }
                div { span.label { "State" } span #connector-state { (view.row.state) } }
                div { span.label { "Done time" } span #done-time { (time_ms(progress["done_time"].as_i64().unwrap_or(-1))) } }
                div { span.label { "Columns" } span { (view.row.column_fields.join(", ")) } }
            }
            h2 { "Progress" }
            table #progress {
                thead { tr { th { "Shard" } th { "State" } th { "Position" } th { "Shard end" } th { "Lag (records)" } th { "Lag (s)" } th { "Done time" } th { "Discards" } th { "Last error" } } }
                tbody {
                    @for s in shard_rows {
                        tr data-shard=(s["shard"]) {
                            td { (s["shard"]) }
                            td.state { (s["state"].as_str().unwrap_or("")) }
                            td.position { (s["position"]) }
                            td.end { (s["end"]) }
                            td.lag { (s["lag"]) }
                            td { (s["lag_seconds"]) }
                            td { (time_ms(s["done_time"].as_i64().unwrap_or(-1))) }
                            td.discards { (s["discards"]) }
                            td.last-error { (s["last_error"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            h2 { "Lag over time" }
            svg #lag-chart width="640" height="160" viewBox="0 0 640 160" role="img" aria-label="lag per shard over time" {}
            div #lag-legend .muted {}
            h2 { "Actions" }
            div.actions {
                form.inline method="post" action={ (base) "/state" } {
                    (csrf_field(&session))
                    @if running {
                        input type="hidden" name="state" value="CONNECTOR_STOPPED";
                        button #stop type="submit" { "Stop" }
                    } @else {
                        input type="hidden" name="state" value="CONNECTOR_RUNNING";
                        button #start type="submit" { "Start" }
                    }
                }
                form.inline method="post" action={ (base) "/reload" } {
                    (csrf_field(&session))
                    input type="hidden" name="shard" value="";
                    button #reload type="submit" { "Reload" }
                }
            }
            form.card #offset-form method="post" action={ (base) "/offset" } {
                (csrf_field(&session))
                strong { "Reset offset" } " (only while stopped)"
                label { "Shard"
                    select #offset-shard name="shard" {
                        option value="" { "all" }
                        @for s in shard_rows { option value=(s["shard"]) { (s["shard"]) } }
                    }
                }
                label title="the last record delivered: the connector resumes at the next one" { "Last delivered sequence" input #offset-sequence name="sequence" inputmode="numeric"; }
                label { "or time (ms)" input #offset-time name="time" inputmode="numeric"; }
                button #offset-reset type="submit" { "Reset offset" }
            }
            h2 { "Config" }
            table #config {
                tbody {
                    @if let Some(map) = config.as_object() {
                        @for (k, v) in map {
                            tr { th { (k) } td { code { @match v { serde_json::Value::String(s) => (s), other => (other) } } } }
                        }
                    }
                }
            }
            p.muted { "Created " (time_ms(view.row.create_time * 1000)) " by " (view.row.creator) }
        },
    ))
}
