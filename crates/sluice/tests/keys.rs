//! The key management calls of `sluice_client` (what `sluice key create|list|disable|delete`
//! will use) against the running binary: a key made by the root works within its grants, is
//! listed without its secret, and stops working once disabled or deleted; the audit log pages.

mod common;

use std::time::Duration;

use common::{Sluice, ID, KEY};
use sluice_client::Client;

#[tokio::test]
async fn the_client_manages_keys_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sluice::start(dir.path()).await;
    let endpoint = format!("http://127.0.0.1:{}", s.port);
    let root = Client::new(&endpoint, ID, KEY).unwrap();
    let run = async {
        root.create_project("demo", "c").await.unwrap();
        let allow = vec!["admin:demo/*".to_string()];
        let made = root
            .create_key("demo-admin", &allow, Some(3600))
            .await
            .unwrap();
        assert!(!format!("{made:?}").contains(&made.access_key));
        let key = Client::new(&endpoint, &made.access_id, &made.access_key).unwrap();
        key.create_topic("demo", "t", 1, 1, None, "").await.unwrap();
        let refused = key.create_project("other", "").await.unwrap_err();
        assert_eq!(refused.code(), Some("NoPermission"), "{refused}");

        let listed = root.list_keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "demo-admin");
        assert_eq!(listed[0].access_id, made.access_id);
        assert_eq!(listed[0].allow, allow);
        assert!(listed[0].expire_time.is_some());

        let rotated = root.rotate_key("demo-admin", None).await.unwrap();
        let new = Client::new(&endpoint, &rotated.access_id, &rotated.access_key).unwrap();
        root.retire_key("demo-admin").await.unwrap();
        let gone = key
            .create_topic("demo", "u", 1, 1, None, "")
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Some("Unauthorized"), "{gone}");
        new.create_topic("demo", "u", 1, 1, None, "").await.unwrap();

        root.disable_key("demo-admin").await.unwrap();
        let off = new
            .create_topic("demo", "v", 1, 1, None, "")
            .await
            .unwrap_err();
        assert_eq!(off.code(), Some("Unauthorized"), "{off}");
        root.enable_key("demo-admin").await.unwrap();
        new.create_topic("demo", "v", 1, 1, None, "").await.unwrap();
        root.delete_key("demo-admin").await.unwrap();
        assert!(root.list_keys().await.unwrap().is_empty());

        let (first, next) = root.audit_log(0, 2).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].what, "POST /projects/demo");
        let (rest, _) = root.audit_log(next, 100).await.unwrap();
        let whats: Vec<&str> = rest.iter().map(|e| e.what.as_str()).collect();
        assert!(whats.contains(&"DeleteKey"), "{whats:?}");
        assert!(rest.iter().any(|e| e.who == "demo-admin"), "{rest:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the key calls finish in time");
}
