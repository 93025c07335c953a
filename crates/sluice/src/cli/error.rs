//! What a command can fail with, the exit code of each kind, and the hint printed with it.

use std::process::ExitCode;

use sluice_client::ClientError;

/// Exit code: a local failure (a file, a bad input line, records the server refused).
pub const EXIT_LOCAL: u8 = 1;
/// Exit code: the command line is wrong (clap uses the same code for its own usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server answered with a DataHub error.
pub const EXIT_SERVER: u8 = 3;
/// Exit code: the endpoint cannot be reached.
pub const EXIT_CONNECTION: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Client(ClientError::Transport(_)) => EXIT_CONNECTION,
            CliError::Client(_) => EXIT_SERVER,
            CliError::Input(_) | CliError::Io(_) => EXIT_LOCAL,
        }
    }

    /// What to try next, for the errors that have an obvious next step.
    pub fn hint(&self) -> Option<&'static str> {
        let code = match self {
            CliError::Usage(_) => return Some("see `sluice help` for the arguments"),
            CliError::Client(ClientError::Transport(_)) => {
                return Some(
                    "check --endpoint (or SLUICE_ENDPOINT, or the profile of `sluice login`) \
                     and that the server is running",
                )
            }
            CliError::Client(e) => e.code().unwrap_or(""),
            _ => return None,
        };
        Some(match code {
            "Unauthorized" | "InvalidAccessId" | "NoPermission" => {
                "check the key pair: --access-id/--access-key, SLUICE_ACCESS_ID/SLUICE_ACCESS_KEY, \
                 or `sluice login`"
            }
            "NoSuchProject" => "list the projects with `sluice project list`",
            "NoSuchTopic" => "list the topics with `sluice topic list PROJECT`",
            "NoSuchShard" | "InvalidShardId" => {
                "list the shards with `sluice shard list PROJECT TOPIC`"
            }
            "NoSuchConnector" => "list the connectors with `sluice connector list PROJECT TOPIC`",
            "NoSuchSubscription" => {
                "list the subscriptions with `sluice subscription list PROJECT TOPIC`"
            }
            "ProjectAlreadyExist" | "TopicAlreadyExist" => {
                "choose another name, or delete the existing one first"
            }
            "InvalidParameter" | "InvalidSchema" | "MalformedRecord" => {
                "check the values given against the topic's schema and the API's limits"
            }
            "SeekOutOfRange" | "InvalidCursor" => {
                "the position is outside the shard: start from --from oldest or latest"
            }
            "LimitExceeded" => "slow down or use smaller batches (--batch-size)",
            "InvalidShardOperation" | "InvalidOperation" | "OperationDenied" => {
                "the resource is not in a state that allows this (e.g. stop the connector first)"
            }
            _ => return None,
        })
    }

    /// Prints the error (with its DataHub code and a hint) to stderr; returns the exit code.
    pub fn report(&self) -> ExitCode {
        let mut text = self.to_string();
        // The transport's causes (connection refused, TLS, timeout) say what went wrong.
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
            source = cause_of(source);
        }
        eprintln!("error: {text}");
        if let Some(hint) = self.hint() {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.exit_code())
    }
}

fn cause_of<'a>(
    e: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    e.and_then(|e| e.source())
}

pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

pub fn input(msg: impl Into<String>) -> CliError {
    CliError::Input(msg.into())
}

pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> CliError {
    CliError::Io(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_exit_code() {
        assert_eq!(usage("x").exit_code(), EXIT_USAGE);
        assert_eq!(input("x").exit_code(), EXIT_LOCAL);
        let api = CliError::Client(ClientError::Api {
            status: 404,
            code: "NoSuchTopic".into(),
            message: "m".into(),
            request_id: "r".into(),
        });
        assert_eq!(api.exit_code(), EXIT_SERVER);
        assert!(api.hint().unwrap().contains("sluice topic list"));
    }
}
