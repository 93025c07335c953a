//! Projects, topics, schemas and shards, on both backends.

use crate::{MetaError, ProjectRow, SchemaRow, ShardRow, TopicRow};
on_both_backends! {
    async fn rows_survive_reopen(backend) {
        let store = backend.open().await;
        let p = ProjectRow {
            name: "proj".into(),
            comment: "c".into(),
            create_time: 1,
            last_modify_time: 2,
        };
        store.insert_project(&p).await.unwrap();
        let dup = ProjectRow {
            name: "PROJ".into(),
            ..p.clone()
        };
        assert!(
            store.insert_project(&dup).await.is_err(),
            "names are case-insensitive"
        );
        let t = TopicRow {
            uid: 0,
            project: "proj".into(),
            name: "t".into(),
            record_type: "TUPLE".into(),
            lifecycle_days: 3,
            comment: "".into(),
            expand_mode: "split".into(),
            create_time: 1,
            last_modify_time: 1,
            schema_version: 0,
        };
        let shard = ShardRow {
            topic_uid: 0,
            shard_id: 0,
            state: "ACTIVE".into(),
            begin_key: "0".repeat(32),
            end_key: "F".repeat(32),
            parents: vec![],
            create_time: 1,
            closed_time: 0,
        };
        let schema = SchemaRow {
            topic_uid: 0,
            version_id: 0,
            schema_json: "{}".into(),
            create_time: 1,
            creator: "root".into(),
        };
        let uid = store
            .insert_topic(&t, std::slice::from_ref(&shard), Some(&schema), |_| {
                Ok::<_, MetaError>(())
            })
            .await
            .unwrap()
            .0;
        let child = ShardRow {
            shard_id: 1,
            parents: vec![0],
            ..shard.clone()
        };
        store
            .change_shards(uid, &[0], 99, &[child], &[], || Ok::<_, MetaError>(()))
            .await
            .unwrap();
        drop(store);

        let store = backend.open().await;
        let snap = store.load().await.unwrap();
        assert_eq!(snap.projects, vec![p]);
        assert_eq!(snap.topics.len(), 1);
        assert_eq!(snap.topics[0].uid, uid);
        assert_eq!(snap.topics[0].schema_version, 0);
        assert_eq!(snap.schemas[0].topic_uid, uid);
        assert_eq!(snap.shards.len(), 2);
        assert_eq!(snap.shards[0].state, "CLOSED");
        assert_eq!(snap.shards[0].closed_time, 99);
        assert_eq!(snap.shards[1].parents, vec![0]);
        store.delete_topic(uid).await.unwrap();
        let snap = store.load().await.unwrap();
        assert!(snap.topics.is_empty() && snap.shards.is_empty() && snap.schemas.is_empty());
    }


}
