//! Connection strings: which backend, which bucket, which prefix, and with what credentials.
//!
//! | form | backend |
//! |---|---|
//! | `memory://bucket[/prefix]` | in-process memory, shared by every store of this process that names the same bucket |
//! | `file:///abs/path` or `file://./rel/path` | a local folder (the embedded default); the whole path is the folder |
//! | `s3://KEY:SECRET@bucket[/prefix]?region=us-east-1` | AWS S3 (credentials may be omitted to use the `AWS_*` environment) |
//! | `http(s)://KEY:SECRET@host:port/bucket[/prefix]` | any S3-compatible server, path-style |
//!
//! Credentials must be percent-encoded when they contain `/`, `+`, `@` or `:`. They never appear
//! in `Debug` or `Display` output. Query parameters of `s3://` and `http(s)://` strings are
//! `object_store` S3 options (`region`, `allow_http`, `conditional_put`, …); `file://` accepts
//! `fsync=true|false` (default false: data is renamed into place atomically, but not flushed to
//! the disk before the rename).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use object_store::aws::AmazonS3ConfigKey;

use crate::error::ConnectionStringError;
use crate::key::check_part;

type ParseResult<T> = std::result::Result<T, ConnectionStringError>;

/// A parsed connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    backend: Backend,
    prefix: String,
}

/// The backend a connection string names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// In-process memory.
    Memory {
        /// Name of the in-process bucket.
        bucket: String,
    },
    /// A local folder.
    File {
        /// The folder (relative paths are relative to the working directory).
        root: PathBuf,
        /// Flush every object to the disk before renaming it into place.
        fsync: bool,
    },
    /// AWS S3 or an S3-compatible server.
    S3(S3Config),
}

/// Settings of an S3 backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Endpoint of an S3-compatible server (`http(s)://host:port`), `None` for AWS.
    pub endpoint: Option<String>,
    /// Static credentials, `None` to read them from the environment.
    pub credentials: Option<Credentials>,
    /// Further `object_store` options from the query string.
    pub options: Vec<(AmazonS3ConfigKey, SecretString)>,
}

/// An access key pair. Its `Debug` output hides both halves.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: SecretString,
    /// Secret access key.
    pub secret_access_key: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// A string that is never shown in `Debug` or `Display`; read it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Do not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl ConnectionString {
    /// Parses a connection string.
    ///
    /// ```
    /// use s3db_core::ConnectionString;
    /// let conn: ConnectionString = "http://KEY:SECRET@127.0.0.1:9000/bucket/app".parse().unwrap();
    /// assert_eq!(conn.prefix(), "app");
    /// assert!(!format!("{conn} {conn:?}").contains("SECRET"));
    ///
    /// let err = "ftp://x".parse::<ConnectionString>().unwrap_err();
    /// assert_eq!(err.part, "scheme");
    /// ```
    ///
    /// # Errors
    /// [`ConnectionStringError`] naming the part that is wrong.
    pub fn parse(s: &str) -> ParseResult<Self> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(ConnectionStringError::new(
                "scheme",
                "expected `memory://`, `file://`, `s3://`, `http://` or `https://`",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => parse_memory(rest),
            "file" => parse_file(rest),
            "s3" => parse_s3(rest),
            "http" | "https" => parse_http(scheme, rest),
            other => Err(ConnectionStringError::new(
                "scheme",
                format!(
                    "unknown scheme `{other}://`; expected memory://, file://, s3://, http:// or https://"
                ),
            )),
        }
    }

    /// A `memory://` connection with the given bucket and prefix.
    ///
    /// # Errors
    /// [`ConnectionStringError`] if the bucket or prefix is invalid.
    pub fn memory(bucket: &str, prefix: &str) -> ParseResult<Self> {
        Self::parse(&format!("memory://{bucket}/{prefix}"))
    }

    /// A `file://` connection on the given folder.
    #[must_use]
    pub fn file(root: impl Into<PathBuf>) -> Self {
        Self {
            backend: Backend::File {
                root: root.into(),
                fsync: false,
            },
            prefix: String::new(),
        }
    }

    /// The backend.
    #[must_use]
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The key prefix inside the bucket (empty for none); every key of the database lives below it.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection string with its credentials, for handing to another process of your own.
    /// Never log it: this is the one rendering that shows secrets.
    #[must_use]
    pub fn to_string_with_secrets(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", percent_encode(&self.prefix, false))
        };
        match &self.backend {
            Backend::Memory { bucket } => format!("memory://{bucket}{prefix}"),
            Backend::File { root, fsync } => format!(
                "file://{}{}",
                percent_encode(&root.to_string_lossy(), false),
                if *fsync { "?fsync=true" } else { "" }
            ),
            Backend::S3(cfg) => {
                let creds = cfg.credentials.as_ref().map_or_else(String::new, |c| {
                    format!(
                        "{}:{}@",
                        percent_encode(c.access_key_id.expose(), true),
                        percent_encode(c.secret_access_key.expose(), true)
                    )
                });
                let mut query: Vec<String> =
                    vec![format!("region={}", percent_encode(&cfg.region, true))];
                query.extend(
                    cfg.options.iter().map(|(k, v)| {
                        format!("{}={}", k.as_ref(), percent_encode(v.expose(), true))
                    }),
                );
                let query = query.join("&");
                match &cfg.endpoint {
                    Some(endpoint) => {
                        let (scheme, host) =
                            endpoint.split_once("://").unwrap_or(("http", endpoint));
                        format!("{scheme}://{creds}{host}/{}{prefix}?{query}", cfg.bucket)
                    }
                    None => format!("s3://{creds}{}{prefix}?{query}", cfg.bucket),
                }
            }
        }
    }

    /// The same connection with another key prefix.
    ///
    /// # Errors
    /// [`ConnectionStringError`] if the prefix has an invalid part.
    pub fn with_prefix(mut self, prefix: &str) -> ParseResult<Self> {
        self.prefix = parse_prefix(prefix)?;
        Ok(self)
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> ParseResult<Self> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for ConnectionString {
    type Error = ConnectionStringError;
    fn try_from(s: &str) -> ParseResult<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.prefix)
        };
        match &self.backend {
            Backend::Memory { bucket } => write!(f, "memory://{bucket}{prefix}"),
            Backend::File { root, .. } => write!(f, "file://{}{prefix}", root.display()),
            Backend::S3(cfg) => {
                let creds = if cfg.credentials.is_some() {
                    "***:***@"
                } else {
                    ""
                };
                match &cfg.endpoint {
                    Some(endpoint) => {
                        let (scheme, host) =
                            endpoint.split_once("://").unwrap_or(("http", endpoint));
                        write!(f, "{scheme}://{creds}{host}/{}{prefix}", cfg.bucket)
                    }
                    None => write!(f, "s3://{creds}{}{prefix}", cfg.bucket),
                }
            }
        }
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn parse_memory(rest: &str) -> ParseResult<ConnectionString> {
    let (location, query) = split_query(rest);
    if let Some(query) = query {
        return Err(ConnectionStringError::new(
            "query",
            format!("memory:// takes no options, found `?{query}`"),
        ));
    }
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    check_bucket(bucket, false)?;
    Ok(ConnectionString {
        backend: Backend::Memory {
            bucket: bucket.to_owned(),
        },
        prefix: parse_prefix(prefix)?,
    })
}

fn parse_file(rest: &str) -> ParseResult<ConnectionString> {
    let (path, query) = split_query(rest);
    if path.is_empty() {
        return Err(ConnectionStringError::new(
            "path",
            "file:// needs a folder: `file:///absolute/path` or `file://./relative/path`",
        ));
    }
    let mut fsync = false;
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "fsync" => fsync = parse_bool("fsync", &value)?,
            other => {
                return Err(ConnectionStringError::new(
                    "query",
                    format!(
                        "unknown file:// option `{other}`; the only option is `fsync=true|false`"
                    ),
                ));
            }
        }
    }
    let decoded = percent_decode(path, "path")?;
    Ok(ConnectionString {
        backend: Backend::File {
            root: PathBuf::from(decoded),
            fsync,
        },
        prefix: String::new(),
    })
}

fn parse_s3(rest: &str) -> ParseResult<ConnectionString> {
    let (location, query) = split_query(rest);
    let (credentials, location) = split_credentials(location)?;
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    check_bucket(bucket, true)?;
    let mut cfg = S3Config {
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: None,
        credentials,
        options: Vec::new(),
    };
    apply_s3_query(&mut cfg, query)?;
    Ok(ConnectionString {
        backend: Backend::S3(cfg),
        prefix: parse_prefix(prefix)?,
    })
}

fn parse_http(scheme: &str, rest: &str) -> ParseResult<ConnectionString> {
    let (location, query) = split_query(rest);
    let (credentials, location) = split_credentials(location)?;
    let Some((host, path)) = location.split_once('/') else {
        return Err(ConnectionStringError::new(
            "bucket",
            format!(
                "{scheme}:// needs a bucket after the host: `{scheme}://host:port/bucket[/prefix]`"
            ),
        ));
    };
    check_host(host)?;
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    check_bucket(bucket, true)?;
    let scheme = scheme.to_ascii_lowercase();
    let mut cfg = S3Config {
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: Some(format!("{scheme}://{host}")),
        credentials,
        options: Vec::new(),
    };
    if scheme == "http" {
        cfg.options.push((
            AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
            SecretString::new("true"),
        ));
    }
    apply_s3_query(&mut cfg, query)?;
    Ok(ConnectionString {
        backend: Backend::S3(cfg),
        prefix: parse_prefix(prefix)?,
    })
}

fn apply_s3_query(cfg: &mut S3Config, query: Option<&str>) -> ParseResult<()> {
    for (name, value) in query_pairs(query)? {
        let key = AmazonS3ConfigKey::from_str(&name).map_err(|_| {
            ConnectionStringError::new(
                "query",
                format!("unknown option `{name}` (options are object_store S3 settings such as region, allow_http, conditional_put)"),
            )
        })?;
        match key {
            AmazonS3ConfigKey::Region | AmazonS3ConfigKey::DefaultRegion => cfg.region = value,
            AmazonS3ConfigKey::Endpoint => {
                check_endpoint(&value)?;
                cfg.endpoint = Some(value);
            }
            AmazonS3ConfigKey::Bucket => {
                return Err(ConnectionStringError::new(
                    "query",
                    "the bucket is given in the location, not as an option",
                ));
            }
            other => {
                cfg.options.retain(|(k, _)| *k != other);
                cfg.options.push((other, SecretString::new(value)));
            }
        }
    }
    Ok(())
}

fn split_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    }
}

fn query_pairs(query: Option<&str>) -> ParseResult<Vec<(String, String)>> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(ConnectionStringError::new(
                "query",
                format!("option `{pair}` has no value; write `{pair}=value`"),
            ));
        };
        pairs.push((
            percent_decode(name, "query")?,
            percent_decode(value, "query")?,
        ));
    }
    Ok(pairs)
}

fn split_credentials(location: &str) -> ParseResult<(Option<Credentials>, &str)> {
    // The last '@' before the first '/' separates credentials from the host or bucket.
    let authority_end = location.find('/').unwrap_or(location.len());
    let Some(at) = location[..authority_end].rfind('@') else {
        return Ok((None, location));
    };
    let userinfo = &location[..at];
    let Some((key, secret)) = userinfo.split_once(':') else {
        return Err(ConnectionStringError::new(
            "credentials",
            "expected `ACCESS_KEY:SECRET@` before the bucket or host",
        ));
    };
    if key.is_empty() || secret.is_empty() {
        return Err(ConnectionStringError::new(
            "credentials",
            "the access key and the secret must both be non-empty",
        ));
    }
    let creds = Credentials {
        access_key_id: SecretString::new(percent_decode(key, "credentials")?),
        secret_access_key: SecretString::new(percent_decode(secret, "credentials")?),
    };
    Ok((Some(creds), &location[at + 1..]))
}

fn check_bucket(bucket: &str, strict_s3: bool) -> ParseResult<()> {
    if bucket.is_empty() {
        return Err(ConnectionStringError::new(
            "bucket",
            "the bucket name is missing",
        ));
    }
    if strict_s3 {
        let valid_chars = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let ends_ok = bucket
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
            && bucket
                .as_bytes()
                .last()
                .is_some_and(u8::is_ascii_alphanumeric);
        if !(3..=63).contains(&bucket.len()) || !valid_chars || !ends_ok {
            return Err(ConnectionStringError::new(
                "bucket",
                format!(
                    "`{bucket}` is not a valid S3 bucket name (3-63 characters: lower-case letters, digits, '.', '-'; starting and ending with a letter or digit)"
                ),
            ));
        }
    } else if !bucket
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(ConnectionStringError::new(
            "bucket",
            format!("`{bucket}` may only contain letters, digits, '.', '-' and '_'"),
        ));
    }
    Ok(())
}

fn check_host(host: &str) -> ParseResult<()> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => {
            if port.parse::<u16>().is_err() && !host.ends_with(']') {
                return Err(ConnectionStringError::new(
                    "host",
                    format!("port `{port}` is not a number from 0 to 65535"),
                ));
            }
            name
        }
        _ => host,
    };
    if name.is_empty() {
        return Err(ConnectionStringError::new(
            "host",
            "the host name is missing",
        ));
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> ParseResult<()> {
    match endpoint.split_once("://") {
        Some(("http" | "https", host)) if !host.is_empty() => {
            check_host(host.trim_end_matches('/'))
        }
        _ => Err(ConnectionStringError::new(
            "query",
            format!("endpoint `{endpoint}` must look like http(s)://host:port"),
        )),
    }
}

fn parse_prefix(prefix: &str) -> ParseResult<String> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let decoded = percent_decode(prefix, "prefix")?;
    for part in decoded.split('/') {
        check_part(part).map_err(|e| ConnectionStringError::new("prefix", e.to_string()))?;
    }
    Ok(decoded)
}

fn parse_bool(name: &str, value: &str) -> ParseResult<bool> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConnectionStringError::new(
            "query",
            format!("`{name}` must be true or false, not `{value}`"),
        )),
    }
}

/// Percent-encodes what the parser would read specially (`%`, `?`, `&`, `#`, control characters
/// and, with `strict` for credentials and values, also `/`, `:`, `@`, `=`, `+` and space).
fn percent_encode(s: &str, strict: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let special = matches!(c, '%' | '?' | '&' | '#')
            || c.is_ascii_control()
            || (strict && matches!(c, '/' | ':' | '@' | '=' | '+' | ' '));
        if special {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn percent_decode(s: &str, part: &'static str) -> ParseResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(ConnectionStringError::new(
                    part,
                    "a '%' must be followed by two hex digits (percent-encoding)",
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConnectionStringError::new(part, "percent-encoded bytes are not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConnectionString {
        match ConnectionString::parse(s) {
            Ok(c) => c,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn part_of_error(s: &str) -> &'static str {
        match ConnectionString::parse(s) {
            Ok(c) => panic!("{s} should fail, got {c:?}"),
            Err(e) => e.part,
        }
    }

    #[test]
    fn memory() {
        let c = parse("memory://bench/run-1/sub");
        assert_eq!(
            c.backend(),
            &Backend::Memory {
                bucket: "bench".into()
            }
        );
        assert_eq!(c.prefix(), "run-1/sub");
        assert_eq!(c.to_string(), "memory://bench/run-1/sub");
        assert_eq!(parse("memory://b").prefix(), "");
        assert_eq!(parse(&c.to_string_with_secrets()), c);
        assert_eq!(part_of_error("memory://"), "bucket");
        assert_eq!(part_of_error("memory://b/../x"), "prefix");
        assert_eq!(part_of_error("memory://b?x=1"), "query");
    }

    #[test]
    fn file() {
        let c = parse("file:///tmp/data/shop");
        assert_eq!(
            c.backend(),
            &Backend::File {
                root: "/tmp/data/shop".into(),
                fsync: false
            }
        );
        let c = parse("file://./data?fsync=true");
        assert_eq!(
            c.backend(),
            &Backend::File {
                root: "./data".into(),
                fsync: true
            }
        );
        assert_eq!(parse(&c.to_string_with_secrets()), c);
        let c = parse("file:///tmp/é?fsync=1");
        assert_eq!(
            c.backend(),
            &Backend::File {
                root: "/tmp/é".into(),
                fsync: true
            }
        );
        let c = ConnectionString::file("/tmp/50%?odd");
        assert_eq!(parse(&c.to_string_with_secrets()), c);
        let c = parse("file://data%20dir");
        assert_eq!(
            c.backend(),
            &Backend::File {
                root: "data dir".into(),
                fsync: false
            }
        );
        assert_eq!(part_of_error("file://"), "path");
        assert_eq!(part_of_error("file:///x?fsync=maybe"), "query");
        assert_eq!(part_of_error("file:///x?color=red"), "query");
    }

    #[test]
    fn s3() {
        let c = parse("s3://AKIA:se%2Fcret@my-bucket/db/app?region=eu-west-1");
        let Backend::S3(cfg) = c.backend() else {
            panic!("not s3")
        };
        assert_eq!(cfg.bucket, "my-bucket");
        assert_eq!(cfg.region, "eu-west-1");
        assert_eq!(cfg.endpoint, None);
        let creds = cfg
            .credentials
            .as_ref()
            .map(|c| c.secret_access_key.expose());
        assert_eq!(creds, Some("se/cret"));
        assert_eq!(c.prefix(), "db/app");
        let shown = format!("{c} {c:?}");
        assert!(
            !shown.contains("AKIA") && !shown.contains("cret"),
            "{shown}"
        );
        assert_eq!(c.to_string(), "s3://***:***@my-bucket/db/app");
        assert_eq!(parse(&c.to_string_with_secrets()), c);
        let c = parse("s3://a%2Bb:c%3Ad%40e@bucket/x%25y?region=eu-west-1&conditional_put=etag");
        assert_eq!(parse(&c.to_string_with_secrets()), c);

        let c = parse("s3://bucket-without-creds");
        let Backend::S3(cfg) = c.backend() else {
            panic!("not s3")
        };
        assert!(cfg.credentials.is_none());

        assert_eq!(part_of_error("s3://KEY@bucket"), "credentials");
        assert_eq!(part_of_error("s3://:x@bucket"), "credentials");
        assert_eq!(part_of_error("s3://k:s@Bad_Bucket"), "bucket");
        assert_eq!(part_of_error("s3://k:s@ab"), "bucket");
        assert_eq!(part_of_error("s3://k:s@bucket?wat=1"), "query");
        assert_eq!(part_of_error("s3://k:s@bucket?region"), "query");
        assert_eq!(part_of_error("s3://k:s%zz@bucket"), "credentials");
    }

    #[test]
    fn http() {
        let c = parse("http://test:test@127.0.0.1:5000/s3db-test/t1");
        let Backend::S3(cfg) = c.backend() else {
            panic!("not s3")
        };
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(cfg.bucket, "s3db-test");
        assert_eq!(c.prefix(), "t1");
        assert_eq!(c.to_string(), "http://***:***@127.0.0.1:5000/s3db-test/t1");
        let again = parse(&c.to_string_with_secrets());
        assert_eq!(again, c);
        assert!(!format!("{c:?}").contains("test:test"));
        assert_eq!(part_of_error("http://k:s@127.0.0.1:5000"), "bucket");
        assert_eq!(part_of_error("http://k:s@127.0.0.1:port/bucket"), "host");
        assert_eq!(part_of_error("https://k:s@/bucket"), "host");
        assert_eq!(part_of_error("ftp://x"), "scheme");
        assert_eq!(part_of_error("no-scheme"), "scheme");
    }
}
