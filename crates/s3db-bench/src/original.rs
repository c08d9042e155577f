//! The original's figures: s3db.js 21.6.2 running the same `resources` workload on this machine
//! (median of 3, Node 20), from the workload's specification (`BENCH.md`).

use crate::backend::BackendKind;

/// The version of s3db.js the figures come from.
pub const ORIGINAL: &str = "s3db.js 21.6.2";

/// Which column of the original's table a backend compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The original on its in-memory client.
    Memory,
    /// The original against the S3 test server.
    S3TestServer,
}

impl Baseline {
    /// The column a backend is compared with: the original has no figures on a local folder, so
    /// `file` is compared with its memory figures.
    pub fn of(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Memory | BackendKind::File => Self::Memory,
            BackendKind::S3 => Self::S3TestServer,
        }
    }

    /// How reports name the column.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::S3TestServer => "S3 test server",
        }
    }
}

/// One phase of the original on one baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// Operations per second (records per second for the listings).
    pub ops_per_s: f64,
    /// Requests per operation.
    pub req_per_op: f64,
}

/// `(phase, memory ops/s, memory req/op, S3 ops/s, S3 req/op)`, as published. The original has no
/// `count` figure.
const TABLE: [(&str, f64, f64, f64, f64); 8] = [
    ("insert_seq", 2246.0, 3.0, 34.2, 3.0),
    ("get_seq", 6461.0, 1.0, 101.0, 1.0),
    ("update_seq", 184.0, 5.0, 8.2, 5.0),
    ("list", 5025.0, 1.0, 139.0, 1.0),
    ("query_partition", 5798.0, 1.0, 136.0, 1.0),
    ("delete_seq", 3125.0, 4.0, 22.3, 6.0),
    ("insert_conc", 4145.0, 3.0, 46.7, 3.0),
    ("get_conc", 12512.0, 1.0, 143.0, 1.0),
];

/// The original's figure for `phase` on `baseline`, if it published one.
pub fn figure(baseline: Baseline, phase: &str) -> Option<Figure> {
    TABLE
        .iter()
        .find(|row| row.0 == phase)
        .map(|&(_, mem_ops, mem_req, s3_ops, s3_req)| match baseline {
            Baseline::Memory => Figure {
                ops_per_s: mem_ops,
                req_per_op: mem_req,
            },
            Baseline::S3TestServer => Figure {
                ops_per_s: s3_ops,
                req_per_op: s3_req,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns() {
        assert_eq!(Baseline::of(BackendKind::File), Baseline::Memory);
        assert_eq!(
            figure(Baseline::S3TestServer, "delete_seq"),
            Some(Figure {
                ops_per_s: 22.3,
                req_per_op: 6.0
            })
        );
        assert_eq!(
            figure(Baseline::Memory, "update_seq").map(|f| f.ops_per_s),
            Some(184.0)
        );
        assert_eq!(figure(Baseline::Memory, "count"), None);
    }
}
