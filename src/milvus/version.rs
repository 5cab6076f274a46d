//! Milvus versions, and every behaviour switch that depends on one.

use std::fmt;

/// `common.SegmentLevel::L0`.
pub const SEGMENT_LEVEL_L0: i32 = 1;

/// A parsed Milvus server version such as `v2.3.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MilvusVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl MilvusVersion {
    /// Parses `v2.3.5`, `2.4.0-rc.1`, `v2.5.8-gpu` and the like; unknown parts are 0.
    pub fn parse(s: &str) -> Self {
        let core = s.trim().trim_start_matches(['v', 'V']);
        let mut nums = core.split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
        let mut next = || nums.next().flatten().unwrap_or(0);
        Self {
            major: next(),
            minor: next(),
            patch: next(),
        }
    }

    fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }

    /// 2.4+ keeps deletes in L0 segments (partition -1) and imports them with `l0_import`.
    pub fn has_l0_segments(&self) -> bool {
        self.at_least(2, 4, 0)
    }

    /// 2.6+ records a `storage_version` per segment.
    pub fn has_storage_version(&self) -> bool {
        self.at_least(2, 6, 0)
    }

    /// Whether a segment of this server is an L0 (delete-only) segment.
    pub fn is_l0_segment(&self, level: i32) -> bool {
        self.has_l0_segments() && level == SEGMENT_LEVEL_L0
    }

    /// Options of the Import of a backed-up segment group into this server.
    /// `end_ts` is in physical milliseconds on these servers: round up, or rows
    /// written in the flush's own millisecond are dropped.
    pub fn import_options(&self, backup_ts: u64, storage_version: i64) -> Vec<(String, String)> {
        let mut options = vec![("backup".to_string(), "true".to_string())];
        if backup_ts > 0 {
            options.push(("end_ts".into(), ((backup_ts >> 18) + 1).to_string()));
        }
        if self.has_storage_version() && storage_version > 0 {
            options.push(("storage_version".into(), storage_version.to_string()));
        }
        options
    }

    /// Options of the Import of an L0 segment's deletes (2.4+).
    pub fn l0_import_options(&self, backup_ts: u64) -> Vec<(String, String)> {
        let mut options = vec![("l0_import".to_string(), "true".to_string())];
        if backup_ts > 0 {
            options.push(("end_ts".into(), ((backup_ts >> 18) + 1).to_string()));
        }
        options
    }
}

/// The data types of fields and array elements Milvus 2.3 has.
const TYPES_OF_2_3: &[i32] = &[0, 1, 2, 3, 4, 5, 10, 11, 20, 21, 22, 23, 100, 101];

impl MilvusVersion {
    /// The first feature of `schema` this server does not have, said as a
    /// user reads it; `None` when it has them all, as far as known (only
    /// servers before 2.4 are checked: they accept a schema with a type or a
    /// flag they do not know, and ignore it; nor is a server whose version
    /// did not parse).
    pub fn lacks(&self, schema: &crate::milvus::proto::schema::CollectionSchema) -> Option<String> {
        if self.at_least(2, 4, 0) || *self == Self::default() {
            return None;
        }
        let type_name = |t: i32| {
            crate::milvus::proto::schema::DataType::try_from(t)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        if !schema.functions.is_empty() {
            return Some("functions (2.5+)".into());
        }
        schema.fields.iter().find_map(|f| {
            let field = &f.name;
            let missing = [f.data_type, f.element_type]
                .into_iter()
                .find(|t| !TYPES_OF_2_3.contains(t));
            if let Some(t) = missing {
                return Some(format!("field {field:?} of type {} ({t})", type_name(t)));
            }
            if f.nullable {
                return Some(format!("field {field:?}, nullable (2.4+)"));
            }
            f.is_function_output
                .then(|| format!("field {field:?}, a function's output (2.5+)"))
        })
    }
}

impl fmt::Display for MilvusVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_switches() {
        let v = MilvusVersion::parse("v2.3.5");
        assert_eq!((v.major, v.minor, v.patch), (2, 3, 5));
        assert!(!v.has_l0_segments());
        assert!(MilvusVersion::parse("2.4.0-rc.1").has_l0_segments());
        assert!(MilvusVersion::parse("v2.6.1").has_storage_version());
        assert_eq!(MilvusVersion::parse("garbage"), MilvusVersion::default());
    }

    #[test]
    fn a_schema_with_what_2_3_lacks_is_named() {
        use crate::milvus::proto::schema::{CollectionSchema, FieldSchema};
        let field = |name: &str, data_type: i32| FieldSchema {
            name: name.into(),
            data_type,
            ..Default::default()
        };
        let with = |f: FieldSchema| CollectionSchema {
            fields: vec![field("pk", 5), field("v", 101), f],
            ..Default::default()
        };
        let (v23, v24) = (
            MilvusVersion::parse("v2.3.5"),
            MilvusVersion::parse("v2.4.0"),
        );
        assert_eq!(v23.lacks(&with(field("arr", 22))), None);
        let sparse = with(field("s", 104));
        assert_eq!(
            v23.lacks(&sparse).as_deref(),
            Some("field \"s\" of type SparseFloatVector (104)")
        );
        assert_eq!(v24.lacks(&sparse), None);
        let bf16_elements = with(FieldSchema {
            element_type: 103,
            ..field("a", 22)
        });
        assert!(
            v23.lacks(&bf16_elements)
                .unwrap()
                .contains("BFloat16Vector (103)")
        );
        let nullable = with(FieldSchema {
            nullable: true,
            ..field("n", 5)
        });
        assert!(v23.lacks(&nullable).unwrap().contains("nullable"));
        assert!(
            v23.lacks(&with(field("x", 999)))
                .unwrap()
                .contains("unknown (999)")
        );
        let output = with(FieldSchema {
            is_function_output: true,
            ..field("o", 101)
        });
        assert!(v23.lacks(&output).unwrap().contains("a function's output"));
        let functions = CollectionSchema {
            functions: vec![Default::default()],
            ..with(field("t", 21))
        };
        assert!(v23.lacks(&functions).unwrap().contains("functions"));
        // A version that did not parse is not checked.
        assert_eq!(MilvusVersion::parse("garbage").lacks(&sparse), None);
    }

    #[test]
    fn import_options_follow_the_version() {
        let ts = (1_700_000_000_000u64 << 18) + 5;
        let v23 = MilvusVersion::parse("v2.3.5");
        assert_eq!(
            v23.import_options(ts, 2),
            [
                ("backup".into(), "true".into()),
                ("end_ts".into(), "1700000000001".into())
            ]
        );
        assert!(!v23.is_l0_segment(SEGMENT_LEVEL_L0));
        let v26 = MilvusVersion::parse("v2.6.0");
        assert!(v26.is_l0_segment(SEGMENT_LEVEL_L0));
        assert!(
            v26.import_options(ts, 2)
                .contains(&("storage_version".into(), "2".into()))
        );
        assert_eq!(
            v26.l0_import_options(0),
            [("l0_import".into(), "true".into())]
        );
    }
}
