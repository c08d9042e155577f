//! The storage conformance suite on every backend: memory, a local folder, and the S3 test server.

mod memory {
    s3db_core::storage_conformance_tests!(|name: &str| Some(
        s3db_core::testing::TestStore::memory(name)
    ));
}

mod file {
    s3db_core::storage_conformance_tests!(|name: &str| Some(s3db_core::testing::TestStore::file(
        name
    )));
}

mod s3 {
    s3db_core::storage_conformance_tests!(s3db_core::testing::TestStore::s3);
}
