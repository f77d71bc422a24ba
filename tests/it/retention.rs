//! `storage.retention` against LocalStack's S3 Object Lock: a ransomware
//! attacker holding the writer's credentials must not be able to destroy
//! a backup. A bucket created with Object Lock enabled, a backup with a
//! COMPLIANCE retention, then: every object and the manifest carry the
//! retention, and deleting a locked version is refused.

use crate::common::*;
use aws_sdk_s3::types::ObjectLockMode;
use backup_cloud::schema::{Retention, RetentionMode};

#[tokio::test(flavor = "multi_thread")]
async fn every_object_and_the_manifest_are_locked() {
    require_services();
    let database = unique("locked_");
    create_sample_database(&database, 2_000);
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let fixture = fixture.on_locked_bucket("bc-locked-", &holder).await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.storage.retention = Some(Retention {
        mode: RetentionMode::Compliance,
        days: 2,
    });
    fixture.write(&config);

    let started = time::OffsetDateTime::now_utc();
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let keys = fixture.keys(&fixture.backup_prefix()).await;
    assert!(keys.contains(&manifest_key), "{keys:?}");
    assert!(keys.len() >= 2, "objects and the manifest: {keys:?}");

    for key in &keys {
        let retention = fixture
            .aws
            .s3
            .get_object_retention()
            .bucket(&fixture.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} has no retention: {e:?}"));
        let retention = retention.retention().expect("a retention");
        assert_eq!(
            retention.mode().map(|m| m.as_str()),
            Some(ObjectLockMode::Compliance.as_str()),
            "{key}"
        );
        let until = retention.retain_until_date().expect("a date").secs();
        let expected = (started + time::Duration::days(2)).unix_timestamp();
        assert!(
            (expected - 5..=expected + 600).contains(&until),
            "{key}: retained until {until}, expected about {expected}"
        );

        let head = fixture
            .aws
            .s3
            .head_object()
            .bucket(&fixture.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let version = head.version_id().expect("Object Lock implies versioning");
        let refused = fixture
            .aws
            .s3
            .delete_object()
            .bucket(&fixture.bucket)
            .key(key)
            .version_id(version)
            .send()
            .await;
        let err = refused.expect_err("a locked version cannot be deleted");
        let code = err.as_service_error().and_then(|e| {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            e.code().map(str::to_owned)
        });
        assert_eq!(code.as_deref(), Some("AccessDenied"), "{key}: {err:?}");
        fixture.get(key).await;
    }
    assert_instances_gone(&fixture).await;
}
