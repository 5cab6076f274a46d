//! Milvus versions, and every behaviour switch that depends on one.

use std::fmt;

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
}
