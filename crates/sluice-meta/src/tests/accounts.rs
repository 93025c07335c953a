//! Access keys and the audit log, on both backends.

use crate::{AccessKeyRow, AuditRow};
fn key(name: &str) -> AccessKeyRow {
    AccessKeyRow {
        name: name.into(),
        access_id: format!("id-{name}"),
        secret: "sealed".into(),
        old_secret: None,
        old_secret_expire_time: None,
        grants: "[\"read:p/t\"]".into(),
        enabled: true,
        create_time: 1,
        last_used_time: 0,
        expire_time: Some(9),
    }
}

on_both_backends! {
    async fn keys_and_audit_survive_a_reopen(backend) {
        {
            let store = backend.open().await;
            store.save_access_key(&key("a")).await.unwrap();
            store.save_access_key(&key("b")).await.unwrap();
            let mut b = key("b");
            b.enabled = false;
            store.save_access_key(&b).await.unwrap();
            store.touch_access_key("a", 50).await.unwrap();
            store.touch_access_key("a", 40).await.unwrap();
            assert!(store.delete_access_key("b").await.unwrap());
            assert!(!store.delete_access_key("b").await.unwrap());
            for i in 0..3 {
                let row = AuditRow {
                    seq: 0,
                    time: i,
                    actor: "root".into(),
                    action: "CreateKey".into(),
                    resource: format!("key/{i}"),
                    request_id: "r".into(),
                    detail: String::new(),
                };
                store.append_audit(&row).await.unwrap();
            }
        }
        let store = backend.open().await;
        let keys = store.load_access_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].last_used_time, 50);
        assert_eq!(keys[0].expire_time, Some(9));
        let page = store.list_audit(0, 2).await.unwrap();
        assert_eq!(page.len(), 2);
        let rest = store.list_audit(page[1].seq, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].resource, "key/2");
    }
}
