//! The object-store conformance suite: one set of behavioural checks that
//! every backend must pass. The memory and local stores run it in unit
//! tests; the S3 store runs it against LocalStack in the end-to-end tests.
//! It panics (with a message naming the check) on the first violation.

use std::sync::Arc;

use bytes::Bytes;

use super::{Metadata, ObjectStore, ObjectStoreExt, PutMode, PutOptions, MIN_PART_SIZE};
use crate::error::ErrorKind;

fn opts(mode: PutMode) -> PutOptions {
    PutOptions::new(mode)
}

fn kind_of<T: std::fmt::Debug>(r: crate::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

/// Run every check against `store`, using keys under `prefix` in `bucket`
/// (which must exist). Use a fresh prefix per run.
pub async fn run_all(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) {
    round_trip_with_metadata(store.as_ref(), bucket, prefix).await;
    missing_objects(store.as_ref(), bucket, prefix).await;
    create_only(store.as_ref(), bucket, prefix).await;
    replace_if_match(store.as_ref(), bucket, prefix).await;
    list_and_delete(store.as_ref(), bucket, prefix).await;
    awkward_keys(store.as_ref(), bucket, prefix).await;
    multipart(store.as_ref(), bucket, prefix).await;
    concurrent_creates(store, bucket, prefix).await;
}

async fn round_trip_with_metadata(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let key = format!("{prefix}rt/object.json");
    let mut o = opts(PutMode::Overwrite);
    o.metadata.insert("sluice-stage".into(), "ingest".into());
    o.metadata
        .insert("sluice-source-key".into(), "raw/a%20b.csv".into());
    o.content_type = Some("application/json".into());
    let put = store
        .put(bucket, &key, Bytes::from_static(b"{\"a\":1}"), o)
        .await
        .expect("put");
    assert!(
        !put.etag.is_empty() && !put.etag.contains('"'),
        "etag unquoted: {:?}",
        put.etag
    );
    let head = store
        .head(bucket, &key)
        .await
        .expect("head")
        .expect("head finds the object");
    assert_eq!(head.size, 7, "head size");
    assert_eq!(head.etag, put.etag, "head etag equals put etag");
    assert_eq!(
        head.metadata.get("sluice-stage").map(String::as_str),
        Some("ingest"),
        "metadata round-trips: {:?}",
        head.metadata
    );
    assert_eq!(
        head.metadata.get("sluice-source-key").map(String::as_str),
        Some("raw/a%20b.csv")
    );
    let got = store.get(bucket, &key).await.expect("get");
    assert_eq!(got.meta.etag, put.etag, "get etag");
    assert_eq!(
        got.meta.metadata, head.metadata,
        "get metadata equals head metadata"
    );
    assert_eq!(&got.bytes().await.expect("body")[..], b"{\"a\":1}");
}

async fn missing_objects(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let key = format!("{prefix}missing/nothing-here");
    assert!(store
        .head(bucket, &key)
        .await
        .expect("head of a missing key is Ok(None)")
        .is_none());
    assert_eq!(
        kind_of(store.get(bucket, &key).await),
        ErrorKind::NotFound,
        "get of a missing key"
    );
    store
        .delete(bucket, &key)
        .await
        .expect("deleting a missing key is not an error");
}

async fn create_only(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let key = format!("{prefix}create/once");
    let first = store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"first"),
            opts(PutMode::Create),
        )
        .await
        .expect("first create");
    let second = store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"second"),
            opts(PutMode::Create),
        )
        .await;
    assert_eq!(
        kind_of(second),
        ErrorKind::AlreadyExists,
        "second create-only put"
    );
    assert_eq!(
        &store.get_bytes(bucket, &key).await.unwrap()[..],
        b"first",
        "content unchanged"
    );
    assert_eq!(
        store.head(bucket, &key).await.unwrap().unwrap().etag,
        first.etag
    );
}

async fn replace_if_match(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let key = format!("{prefix}update/obj");
    let v1 = store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"v1"),
            opts(PutMode::Create),
        )
        .await
        .expect("create");
    let v2 = store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"v2"),
            opts(PutMode::Update {
                etag: v1.etag.clone(),
            }),
        )
        .await
        .expect("update with the current etag");
    assert_ne!(v1.etag, v2.etag, "etag changes with content");
    let stale = store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"v3"),
            opts(PutMode::Update {
                etag: v1.etag.clone(),
            }),
        )
        .await;
    assert_eq!(
        kind_of(stale),
        ErrorKind::Precondition,
        "update with a stale etag"
    );
    assert_eq!(&store.get_bytes(bucket, &key).await.unwrap()[..], b"v2");
    let gone = store
        .put(
            bucket,
            &format!("{prefix}update/never-written"),
            Bytes::from_static(b"x"),
            opts(PutMode::Update { etag: v1.etag }),
        )
        .await;
    let k = kind_of(gone);
    assert!(
        matches!(k, ErrorKind::NotFound | ErrorKind::Precondition),
        "update of a missing key: {k:?}"
    );
    store
        .put(
            bucket,
            &key,
            Bytes::from_static(b"v4"),
            opts(PutMode::Overwrite),
        )
        .await
        .expect("overwrite");
    assert_eq!(&store.get_bytes(bucket, &key).await.unwrap()[..], b"v4");
}

async fn list_and_delete(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let base = format!("{prefix}list/");
    for k in ["b/2", "a/1", "a/3", "c"] {
        store
            .put(
                bucket,
                &format!("{base}{k}"),
                Bytes::from_static(b"x"),
                opts(PutMode::Overwrite),
            )
            .await
            .expect("put");
    }
    store
        .put(
            bucket,
            &format!("{prefix}listing-not/x"),
            Bytes::from_static(b"x"),
            opts(PutMode::Overwrite),
        )
        .await
        .unwrap();
    let keys: Vec<String> = store
        .list(bucket, &base)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let want: Vec<String> = ["a/1", "a/3", "b/2", "c"]
        .iter()
        .map(|k| format!("{base}{k}"))
        .collect();
    assert_eq!(keys, want, "list is sorted and limited to the prefix");
    let sub: Vec<String> = store
        .list(bucket, &format!("{base}a/"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(sub.len(), 2, "nested prefix");
    store
        .delete(bucket, &format!("{base}a/1"))
        .await
        .expect("delete");
    assert!(
        store
            .head(bucket, &format!("{base}a/1"))
            .await
            .unwrap()
            .is_none(),
        "deleted"
    );
    assert_eq!(store.list(bucket, &base).await.unwrap().len(), 3);
}

async fn awkward_keys(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let keys = [
        format!("{prefix}awkward/with space/and+plus.csv"),
        format!("{prefix}awkward/pct%20literal=eq&amp.csv"),
        format!("{prefix}awkward/ünïcødé/日本.csv"),
    ];
    for k in &keys {
        store
            .put(bucket, k, Bytes::from(k.clone()), opts(PutMode::Create))
            .await
            .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
        assert_eq!(
            store.get_bytes(bucket, k).await.unwrap(),
            Bytes::from(k.clone()),
            "round trip of {k:?}"
        );
    }
    let listed: Vec<String> = store
        .list(bucket, &format!("{prefix}awkward/"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(listed, want, "awkward keys list back exactly");
}

async fn multipart(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let key = format!("{prefix}multipart/big.bin");
    // Three chunks that straddle part boundaries: more than two minimum parts.
    let chunk: Vec<u8> = (0..(MIN_PART_SIZE + 123_457))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut up = store
        .put_multipart(bucket, &key, opts(PutMode::Create))
        .await
        .expect("start");
    for _ in 0..2 {
        up.write(Bytes::from(chunk.clone()))
            .await
            .expect("write part");
    }
    up.write(Bytes::from_static(b"tail")).await.unwrap();
    assert!(
        store.head(bucket, &key).await.unwrap().is_none(),
        "nothing visible before complete"
    );
    let done = up.complete().await.expect("complete");
    let body = store.get_bytes(bucket, &key).await.unwrap();
    assert_eq!(body.len(), chunk.len() * 2 + 4, "multipart size");
    assert_eq!(&body[..chunk.len()], &chunk[..], "multipart content");
    assert_eq!(&body[body.len() - 4..], b"tail");
    assert_eq!(
        store.head(bucket, &key).await.unwrap().unwrap().etag,
        done.etag
    );

    // Create-only applies at completion.
    let mut again = store
        .put_multipart(bucket, &key, opts(PutMode::Create))
        .await
        .unwrap();
    again.write(Bytes::from(chunk.clone())).await.unwrap();
    again.write(Bytes::from(chunk.clone())).await.unwrap();
    assert_eq!(
        kind_of(again.complete().await),
        ErrorKind::AlreadyExists,
        "multipart create over an existing key"
    );

    // Replace-if-match applies at completion too.
    let mut upd = store
        .put_multipart(
            bucket,
            &key,
            opts(PutMode::Update {
                etag: done.etag.clone(),
            }),
        )
        .await
        .unwrap();
    upd.write(Bytes::from_static(b"small replacement"))
        .await
        .unwrap();
    upd.complete()
        .await
        .expect("multipart update with the current etag");
    assert_eq!(
        &store.get_bytes(bucket, &key).await.unwrap()[..],
        b"small replacement"
    );

    // Abort leaves nothing.
    let aborted_key = format!("{prefix}multipart/aborted.bin");
    let mut ab = store
        .put_multipart(bucket, &aborted_key, opts(PutMode::Create))
        .await
        .unwrap();
    ab.write(Bytes::from(chunk.clone())).await.unwrap();
    ab.write(Bytes::from(chunk)).await.unwrap();
    ab.abort().await.expect("abort");
    assert!(
        store.head(bucket, &aborted_key).await.unwrap().is_none(),
        "aborted upload invisible"
    );
    let _: Metadata = Metadata::new();
}

async fn concurrent_creates(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) {
    let key = format!("{prefix}race/winner");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, bucket, key) = (store.clone(), bucket.to_string(), key.clone());
            tokio::spawn(async move {
                store
                    .put(
                        &bucket,
                        &key,
                        Bytes::from(format!("writer {i}")),
                        opts(PutMode::Create),
                    )
                    .await
                    .map(|_| i)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(i) => winners.push(i),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "losers see AlreadyExists: {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create wins: {winners:?}"
    );
    let body = store.get_bytes(bucket, &key).await.unwrap();
    assert_eq!(
        body,
        Bytes::from(format!("writer {}", winners[0])),
        "the winner's content is what is stored"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, MemoryStore};

    #[tokio::test]
    async fn memory_store_conforms() {
        run_all(Arc::new(MemoryStore::new()), "conformance", "t/").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run_all(
            Arc::new(LocalStore::new(dir.path()).unwrap()),
            "conformance",
            "t/",
        )
        .await;
        // Nothing is left in the temp folder after all those uploads.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(".sluice/tmp"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[tokio::test]
    async fn local_store_rejects_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root")).unwrap();
        for key in [
            "../escape",
            "a/../../escape",
            "a//b",
            "/abs",
            "a/./b",
            "trailing/",
        ] {
            let err = store
                .put(
                    "bucket",
                    key,
                    Bytes::from_static(b"x"),
                    opts(PutMode::Overwrite),
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Rejected, "{key}: {err}");
            assert!(
                err.to_string().contains(key),
                "the error names the key: {err}"
            );
        }
        assert!(!dir.path().join("escape").exists());
    }

    #[tokio::test]
    async fn local_store_sees_files_dropped_in_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("landing/raw/trips")).unwrap();
        std::fs::write(dir.path().join("landing/raw/trips/a.csv"), b"x,y\n1,2\n").unwrap();
        let listed = store.list("landing", "raw/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "raw/trips/a.csv");
        assert_eq!(listed[0].size, 8);
        let etag = listed[0].etag.clone();
        assert_eq!(
            store
                .head("landing", "raw/trips/a.csv")
                .await
                .unwrap()
                .unwrap()
                .etag,
            etag,
            "stable etag"
        );
        std::fs::write(
            dir.path().join("landing/raw/trips/a.csv"),
            b"x,y\n1,2\n3,4\n",
        )
        .unwrap();
        assert_ne!(
            store
                .head("landing", "raw/trips/a.csv")
                .await
                .unwrap()
                .unwrap()
                .etag,
            etag,
            "etag follows content changes"
        );
    }

    #[tokio::test]
    async fn local_store_counts_commits_in_one_file_rewritten_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let seq_file = dir.path().join(".sluice/sequencer");
        let mut seen = Vec::new();
        let mut inode = None;
        for i in 0..5u64 {
            // A new handle each time: the count lives on disk, not in the handle.
            let store = LocalStore::new(dir.path()).unwrap();
            let put = store
                .put(
                    "bucket",
                    &format!("k{}", i % 2),
                    Bytes::from(vec![i as u8; 3]),
                    opts(PutMode::Overwrite),
                )
                .await
                .unwrap();
            let on_disk = std::fs::read_to_string(&seq_file).unwrap();
            assert_eq!(put.sequencer.as_deref(), Some(on_disk.as_str()));
            let ino = std::fs::metadata(&seq_file).unwrap().ino();
            assert_eq!(*inode.get_or_insert(ino), ino, "rewritten in place");
            seen.push(on_disk);
        }
        let want: Vec<String> = (1..=5u64).map(|n| format!("{n:016X}")).collect();
        assert_eq!(seen, want);
        // A failed conditional write is not a commit.
        let store = LocalStore::new(dir.path()).unwrap();
        let err = store
            .put(
                "bucket",
                "k0",
                Bytes::from_static(b"x"),
                opts(PutMode::Create),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&seq_file).unwrap(), want[4]);
    }

    #[tokio::test]
    async fn memory_store_injected_failures_are_transient() {
        let store = MemoryStore::new();
        store.inject_transient_failures("head", 1);
        let err = store.head("bucket", "k").await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(store.head("bucket", "k").await.unwrap().is_none());
    }
}
