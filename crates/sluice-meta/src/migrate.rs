//! Versioned schema migrations, shared by both backends: each backend lists its own SQL for
//! the same versions (`migrations/sqlite/`, `migrations/postgres/`), so a store on either
//! reports one [`SCHEMA_VERSION`]. Migrations are embedded in the binary and applied at open by
//! sqlx's migrator, which records them in the store's `_sqlx_migrations` table.
//!
//! An applied migration is never edited (sqlx checks its checksum); a change to the schema is a
//! new file with the next version, in both directories. A store that records a version this
//! binary does not know was written by a newer Sluice and is refused ([`MetaError::TooNew`])
//! before anything is changed.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use crate::store::MetaError;

/// One migration: (version, description, SQL).
pub(crate) type Step = (i64, &'static str, &'static str);

/// The newest schema version this binary knows (the last version of both backends' lists).
pub const SCHEMA_VERSION: i64 = 5;

/// A backend's embedded migrations, as a source for sqlx's migrator.
#[derive(Debug)]
pub(crate) struct Embedded(pub(crate) &'static [Step]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        let migrations = self
            .0
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// Refuses a store whose highest recorded version `found` is newer than this binary knows.
pub(crate) fn refuse_newer(found: i64) -> Result<(), MetaError> {
    if found > SCHEMA_VERSION {
        return Err(MetaError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}
