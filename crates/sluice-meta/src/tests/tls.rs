//! The shared backend over TLS: `sslmode` and `sslrootcert` in the URL are honoured, against the
//! TLS-only PostgreSQL of `scripts/services.sh` (`SLUICE_TEST_PG_TLS_PORT`, `SLUICE_TEST_TLS_CA`;
//! `SLUICE_TEST_TLS_OTHER_CA` signed nothing).

use sqlx::Connection;

use super::bounded;
use crate::{MetaStore, ProjectRow};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the services (`source scripts/services.sh; services_start`)"
        )
    })
}

/// The TLS server's URL with `query` appended (the user and password are the services' own).
fn url(query: &str) -> String {
    format!(
        "postgres://sluice:sluice@localhost:{}/sluice_test?{query}",
        env("SLUICE_TEST_PG_TLS_PORT")
    )
}

#[tokio::test]
async fn a_tls_url_is_verified_against_its_root_certificate() {
    bounded(async {
        let ca = env("SLUICE_TEST_TLS_CA");
        let verified = format!("sslmode=verify-full&sslrootcert={ca}");
        let schema = format!("meta_tls_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&url(&verified)).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let in_schema = format!("&options=-c%20search_path%3D{schema}");

        let store = MetaStore::open_postgres(&url(&format!("{verified}{in_schema}")))
            .await
            .expect("a verified TLS connection opens");
        let p = ProjectRow {
            name: "over-tls".into(),
            comment: String::new(),
            create_time: 1,
            last_modify_time: 1,
        };
        store.insert_project(&p).await.unwrap();
        assert_eq!(store.load().await.unwrap().projects, vec![p]);

        let other = env("SLUICE_TEST_TLS_OTHER_CA");
        let untrusted = format!("sslmode=verify-full&sslrootcert={other}{in_schema}");
        assert!(
            MetaStore::open_postgres(&url(&untrusted)).await.is_err(),
            "a server certificate the given root did not sign is refused"
        );
        let plain = format!("sslmode=disable{in_schema}");
        assert!(
            MetaStore::open_postgres(&url(&plain)).await.is_err(),
            "the TLS-only server refuses plaintext"
        );
    })
    .await
}
