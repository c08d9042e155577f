//! Helpers shared by the integration tests: a scripted workload, a strict Prometheus text parser
//! and a raw HTTP/1.1 client.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use s3db_core::{Database, Error, Filter, Resource, ResourceConfig, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The user resource of the tests.
pub fn users() -> ResourceConfig {
    ResourceConfig::new("users")
        .attribute("name", "string|required")
        .attribute("age", "number")
}

/// What [`workload`] does, per operation: (count, errors).
pub const EXPECTED: [(&str, u64, u64); 7] = [
    ("insert", 7, 2),
    ("get", 7, 2),
    ("update", 3, 1),
    ("list", 1, 0),
    ("query", 1, 0),
    ("count", 1, 0),
    ("delete", 1, 0),
];

/// A scripted workload: 5 inserts, an invalid one and a duplicate; 5 gets and 2 of missing ids;
/// 2 updates and 1 of a missing id; a list, a query, a count and a delete.
pub async fn workload(users: &Resource) -> Result<()> {
    for i in 0..5 {
        users
            .insert(json!({"id": format!("u{i}"), "name": format!("user {i}"), "age": 20 + i}))
            .await?;
    }
    expect_err(users.insert(json!({"age": 3})).await, "validation");
    expect_err(
        users.insert(json!({"id": "u0", "name": "again"})).await,
        "already exists",
    );
    for i in 0..5 {
        users.get(&format!("u{i}")).await?;
    }
    for missing in ["missing-1", "missing-2"] {
        expect_err(users.get(missing).await, "not found");
    }
    users.update("u0", json!({"age": 40})).await?;
    users.update("u1", json!({"name": "renamed"})).await?;
    expect_err(
        users.update("missing-3", json!({"age": 1})).await,
        "not found",
    );
    assert_eq!(users.list().await?.len(), 5);
    assert_eq!(users.query(Filter::eq("name", "renamed")).await?.len(), 1);
    assert_eq!(users.count().await?, 5);
    users.delete("u4").await?;
    Ok(())
}

fn expect_err<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(Error::Validation(_)) if what == "validation" => {}
        Err(Error::AlreadyExists { .. }) if what == "already exists" => {}
        Err(Error::NotFound { .. }) if what == "not found" => {}
        other => panic!("expected a {what} error, got {other:?}"),
    }
}

/// A database on a connection, with the users resource (created by the caller when needed).
pub async fn connect(conn: s3db_core::ConnectionString) -> Result<Database> {
    Database::builder().connection(conn).connect().await
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The parsed exposition: samples, and each family's type and help.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
    pub help: BTreeMap<String, String>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{a="x",b="y"}` from the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut rest = s
        .strip_prefix('{')
        .unwrap_or_else(|| panic!("labels in {line:?}"));
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after.to_owned());
        }
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label name=\" in {line:?}"));
        assert!(is_label_name(name), "bad label name {name:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "duplicate label {name} in {line:?}"
        );
        rest = &after[end + 1..];
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else {
            assert!(rest.starts_with('}'), "expected , or }} in {line:?}");
        }
    }
}

/// Parses the text exposition format strictly; panics naming the first broken rule.
pub fn parse_prometheus(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut out = Exposition::default();
    let mut seen_series = BTreeSet::new();
    let mut finished_families: BTreeSet<String> = BTreeSet::new();
    let mut current_family: Option<String> = None;
    let mut switch_to = |family: &str, finished: &mut BTreeSet<String>| {
        if current_family.as_deref() != Some(family) {
            if let Some(previous) = current_family.take() {
                finished.insert(previous);
            }
            assert!(
                !finished.contains(family),
                "family {family} is not contiguous"
            );
            current_family = Some(family.to_owned());
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(help)) => {
                    assert!(is_metric_name(name), "bad name in {line:?}");
                    switch_to(name, &mut finished_families);
                    assert!(
                        out.help.insert(name.to_owned(), help.to_owned()).is_none(),
                        "second HELP for {name}"
                    );
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_metric_name(name), "bad name in {line:?}");
                    assert!(
                        ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                        "bad type in {line:?}"
                    );
                    switch_to(name, &mut finished_families);
                    assert!(
                        !out.samples
                            .iter()
                            .any(|s| family_of(&s.name, &out.types) == name),
                        "TYPE of {name} after its samples"
                    );
                    assert!(
                        out.types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "second TYPE for {name}"
                    );
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(is_metric_name(name), "bad metric name in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], line)
        } else {
            (BTreeMap::new(), line[name_end..].to_owned())
        };
        let mut fields = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("a space before the value in {line:?}"))
            .split(' ');
        let value = fields
            .next()
            .and_then(parse_value)
            .unwrap_or_else(|| panic!("bad value in {line:?}"));
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(fields.next().is_none(), "trailing fields in {line:?}");
        let family = family_of(name, &out.types);
        let kind = out
            .types
            .get(&family)
            .unwrap_or_else(|| panic!("sample {name} without a TYPE"))
            .clone();
        switch_to(&family, &mut finished_families);
        match kind.as_str() {
            "counter" => {
                assert!(name.ends_with("_total"), "counter {name} ends with _total");
                assert!(value >= 0.0, "counter {name} is not negative");
            }
            "summary" if name == family => {
                let q = labels
                    .get("quantile")
                    .and_then(|q| q.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("summary sample without quantile: {line:?}"));
                assert!((0.0..=1.0).contains(&q), "quantile in 0..1: {line:?}");
            }
            _ => {}
        }
        let series = format!("{name}{labels:?}");
        assert!(seen_series.insert(series), "duplicate series {line:?}");
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    // Every summary series has its _sum and _count.
    for s in &out.samples {
        if out.types.get(&s.name).map(String::as_str) == Some("summary") {
            let mut base = s.labels.clone();
            base.remove("quantile");
            for suffix in ["_sum", "_count"] {
                assert!(
                    out.samples
                        .iter()
                        .any(|o| o.name == format!("{}{suffix}", s.name) && o.labels == base),
                    "summary {} {base:?} has no {suffix}",
                    s.name
                );
            }
        }
    }
    out
}

fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    if types.contains_key(name) {
        return name.to_owned();
    }
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("summary" | "histogram")
            )
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// A raw HTTP/1.1 request; returns the status code, the head and the body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}
