//! The core plugin conformance suite.

mod common;

use std::sync::Arc;

use common::*;
use s3db_core::testing::plugin_conformance::{PluginCase, check_plugin};
use s3db_fulltext::{FullTextExt, FullTextPlugin};
use serde_json::json;

#[tokio::test]
async fn the_plugin_conforms() -> TestResult {
    check_plugin(&PluginCase {
        make: Box::new(plugin),
        resource: articles(),
        exercise: Arc::new(|db, articles| {
            Box::pin(async move {
                articles
                    .insert(json!({"id": "a", "title": "Conformance rust", "body": "text"}))
                    .await?;
                articles
                    .insert(json!({"id": "b", "title": "Other", "body": "rust rust"}))
                    .await?;
                let ft = db
                    .plugin::<FullTextPlugin>()
                    .unwrap_or_else(|| panic!("installed"));
                assert_eq!(ft.search("articles", "rust").await?.len(), 2);
                let handle = articles
                    .fulltext()
                    .unwrap_or_else(|| panic!("the resource handle is attached"));
                assert_eq!(handle.search("conformance").await?.len(), 1);
                Ok(())
            })
        }),
    })
    .await
}
