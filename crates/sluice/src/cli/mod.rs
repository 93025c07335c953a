//! The client side of the `sluice` binary: commands that call a Sluice (or DataHub) endpoint
//! with signed requests through `sluice-client`.
//!
//! Layout: `mod.rs` (the command tree and dispatch), `creds.rs` (flags > environment >
//! profile, `sluice login`), `error.rs` (errors, exit codes, hints), `output.rs` (tables, JSON,
//! times), `resources.rs` (project, topic, shard), `records.rs` (record, consume, tail),
//! `produce.rs` (CSV / JSON lines in), `connector.rs` (connectors and their status),
//! `subscription.rs` (subscriptions and offsets), `key.rs` (access keys and the audit log).

mod connector;
pub mod creds;
pub mod error;
mod key;
mod output;
mod produce;
mod records;
mod resources;
mod subscription;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

pub use connector::ConnectorCmd;
pub use key::KeyCmd;
pub use produce::ProduceArgs;
pub use records::{ConsumeArgs, RecordCmd, TailArgs};
pub use resources::{ProjectCmd, ShardCmd, TopicCmd};
pub use subscription::SubscriptionCmd;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Endpoint, key pair and output format: the flags every client command takes (before or
/// after its subcommand). Deliberately not `Debug`: it holds the secret.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Endpoint URL [default: the profile's, else http://127.0.0.1:8090].
    #[arg(long, env = "SLUICE_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// AccessId of the key pair.
    #[arg(long, env = "SLUICE_ACCESS_ID", global = true)]
    pub access_id: Option<String>,
    /// AccessKey secret (visible in the process list: prefer SLUICE_ACCESS_KEY or `sluice login`).
    #[arg(long, env = "SLUICE_ACCESS_KEY", global = true, hide_env_values = true)]
    pub access_key: Option<String>,
    /// Profile (written by `sluice login`) that fills what the flags and environment leave out.
    #[arg(long, env = "SLUICE_PROFILE", global = true, default_value = "default")]
    pub profile: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// A resource group: the client flags and one of its subcommands.
#[derive(Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: C,
}

/// A single command with the client flags.
#[derive(Args)]
pub struct Leaf<A: Args> {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub args: A,
}

/// `sluice login` takes only the client flags.
#[derive(Args)]
pub struct NoArgs {}

/// The client commands, as `main.rs` lists them.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Check a key pair against an endpoint and keep both in a profile (0600).
    Login(Leaf<NoArgs>),
    /// Projects: list, get, create, update, delete.
    Project(Group<ProjectCmd>),
    /// Topics: list, get, create (TUPLE with a schema, or BLOB), update, delete, append-field.
    Topic(Group<TopicCmd>),
    /// Shards: list, split, merge, extend.
    Shard(Group<ShardCmd>),
    /// Records one call at a time: cursor, get, put.
    Record(Group<RecordCmd>),
    /// Connectors: create, list, get, delete, stop, start, reload, status, offset reset.
    Connector(Group<ConnectorCmd>),
    /// Subscriptions: create, list, get, update, delete, and their offsets.
    Subscription(Group<SubscriptionCmd>),
    /// Access keys (create, list, disable, enable, rotate, retire, delete) and the audit log.
    Key(Group<KeyCmd>),
    /// Put records from CSV or JSON lines (a file or standard input).
    Produce(Leaf<ProduceArgs>),
    /// Read records from a cursor up to the shard's end (or --limit).
    Consume(Leaf<ConsumeArgs>),
    /// Print the last records of each shard; with --follow, keep printing new ones.
    Tail(Leaf<TailArgs>),
}

async fn dispatch(cmd: ClientCommand) -> error::Result<()> {
    match cmd {
        ClientCommand::Login(l) => {
            let path = creds::login(&l.client).await?;
            eprintln!(
                "the key pair works; kept in profile {:?} of {}",
                l.client.profile,
                path.display()
            );
            Ok(())
        }
        ClientCommand::Project(g) => resources::project(&g.client, g.cmd).await,
        ClientCommand::Topic(g) => resources::topic(&g.client, g.cmd).await,
        ClientCommand::Shard(g) => resources::shard(&g.client, g.cmd).await,
        ClientCommand::Record(g) => records::record(&g.client, g.cmd).await,
        ClientCommand::Connector(g) => connector::run(&g.client, g.cmd).await,
        ClientCommand::Subscription(g) => subscription::run(&g.client, g.cmd).await,
        ClientCommand::Key(g) => key::run(&g.client, g.cmd).await,
        ClientCommand::Produce(l) => produce::run(&l.client, l.args).await,
        ClientCommand::Consume(l) => records::consume(&l.client, l.args).await,
        ClientCommand::Tail(l) => records::tail(&l.client, l.args).await,
    }
}

/// Runs a client command; errors are printed with their code and hint.
pub fn run(cmd: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return error::io("cannot start the runtime", e).report(),
    };
    match runtime.block_on(dispatch(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
