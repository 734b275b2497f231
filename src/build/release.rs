//! A suite's Release file: what the archive signs, and the only thing that makes
//! its Packages indices trustworthy.
//!
//! Owns parsing the (already signature-verified) Release text — Suite, Codename,
//! Date, Valid-Until, Architectures, Components, Acquire-By-Hash and the SHA256
//! table — finding the Packages index for a component and architecture, and the
//! freshness and suite checks apt applies against replayed or swapped metadata.
//!
//! Invariants: the input must be the plaintext that gpgv verified (`gpgv --output`),
//! never text cut out of an InRelease file by hand: anything outside the signed part
//! would otherwise be trusted. Text that still carries OpenPGP armor is rejected.
//! Every path in
//! the SHA256 table stays inside the suite directory.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::build::deb822::{self, Deb822Error, Syntax};
pub(crate) use crate::image::codec::Compression;
use crate::store::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReleaseError {
    #[error("Release still has its OpenPGP armor; pass the text gpgv verified")]
    StillSigned,
    #[error("Release: {0}")]
    Syntax(#[from] Deb822Error),
    #[error("Release: want one paragraph, found {0}")]
    Paragraphs(usize),
    #[error("Release: bad {field} date {value:?} (want e.g. \"Sat, 20 May 2025 08:30:00 UTC\")")]
    BadDate { field: &'static str, value: String },
    #[error("Release: bad SHA256 line {line:?}: {reason}")]
    BadEntry { line: String, reason: String },
    #[error("Release for {suite} expired at {valid_until} (now {now}); the mirror is stale or replaying old metadata")]
    Expired {
        suite: String,
        valid_until: UnixTime,
        now: UnixTime,
    },
    #[error("Release for {suite} is dated {date}, in the future (now {now}); check the clock")]
    NotYetValid {
        suite: String,
        date: UnixTime,
        now: UnixTime,
    },
    #[error("Release is for suite {suite:?} / codename {codename:?}, not {want:?}")]
    WrongSuite {
        want: String,
        suite: String,
        codename: String,
    },
    #[error("Release for {suite} has no component {component:?} (has: {have})")]
    NoComponent {
        suite: String,
        component: String,
        have: String,
    },
    #[error("Release for {suite} has no architecture {arch:?} (has: {have})")]
    NoArchitecture {
        suite: String,
        arch: String,
        have: String,
    },
    #[error("Release for {suite} lists no {path}(.xz|.gz) in its SHA256 table")]
    NoIndex { suite: String, path: String },
}

/// Seconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct UnixTime(pub(crate) i64);

impl UnixTime {
    pub(crate) fn now() -> UnixTime {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        UnixTime(secs)
    }

    /// Parses the RFC 2822 form Release files use: `[Day, ]DD Mon YYYY HH:MM[:SS]
    /// [UTC|GMT|Z|+hhmm|-hhmm]` (a missing zone means UTC).
    pub(crate) fn parse_rfc2822(s: &str) -> Option<UnixTime> {
        let s = s.trim();
        let s = match s.split_once(',') {
            Some((_weekday, rest)) => rest,
            None => s,
        };
        let mut parts = s.split_whitespace();
        let day: u32 = parts.next()?.parse().ok()?;
        let month = parts.next()?;
        let month = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ]
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))? as u32
            + 1;
        let year_text = parts.next()?;
        if year_text.len() != 4 {
            return None;
        }
        let year: i64 = year_text.parse().ok()?;
        let mut hms = parts.next()?.split(':');
        let hour: i64 = hms.next()?.parse().ok()?;
        let minute: i64 = hms.next()?.parse().ok()?;
        let second: i64 = match hms.next() {
            Some(s) => s.parse().ok()?,
            None => 0,
        };
        if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let offset = match parts.next() {
            None | Some("UTC" | "GMT" | "Z" | "UT") => 0,
            Some(z) => {
                let (sign, digits) = match z.as_bytes().first()? {
                    b'+' => (1, &z[1..]),
                    b'-' => (-1, &z[1..]),
                    _ => return None,
                };
                if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let h: i64 = digits[..2].parse().ok()?;
                let m: i64 = digits[2..].parse().ok()?;
                sign * (h * 3600 + m * 60)
            }
        };
        if parts.next().is_some() || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(UnixTime(
            days * 86400 + hour * 3600 + minute * 60 + second - offset,
        ))
    }
}

impl fmt::Display for UnixTime {
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86400);
        let secs = self.0.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// One line of the SHA256 table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry<'a> {
    pub(crate) sha256: Digest,
    pub(crate) size: u64,
    /// Relative to `dists/<suite>/`.
    pub(crate) path: &'a str,
}

/// The index files to look for, in order of preference: smallest download first.
const PREFERRED: [(Compression, &str); 3] = [
    (Compression::Xz, ".xz"),
    (Compression::Gzip, ".gz"),
    (Compression::None, ""),
];

/// The Packages index chosen for a component and architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index<'r, 'a> {
    pub(crate) entry: &'r FileEntry<'a>,
    pub(crate) compression: Compression,
}

#[derive(Debug, Clone)]
pub(crate) struct Release<'a> {
    pub(crate) origin: Option<&'a str>,
    pub(crate) suite: Option<&'a str>,
    pub(crate) codename: Option<&'a str>,
    pub(crate) date: Option<UnixTime>,
    pub(crate) valid_until: Option<UnixTime>,
    pub(crate) architectures: Vec<&'a str>,
    pub(crate) components: Vec<&'a str>,
    /// Indices are also published under `…/by-hash/SHA256/<hex>`, which a mirror
    /// update cannot change under a running download.
    pub(crate) acquire_by_hash: bool,
    pub(crate) sha256: Vec<FileEntry<'a>>,
}

/// Clock skew tolerated before a Release dated in the future is refused (locker's
/// own choice: small enough to catch a wrong clock, large enough for NTP drift).
const MAX_FUTURE_SECS: i64 = 600;

impl<'a> Release<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Release<'a>, ReleaseError> {
        if text.trim_start().starts_with("-----BEGIN PGP") {
            return Err(ReleaseError::StillSigned);
        }
        let mut paras = deb822::parse(text, Syntax::Control)?;
        if paras.len() != 1 {
            return Err(ReleaseError::Paragraphs(paras.len()));
        }
        let p = paras.remove(0);
        let date = |field: &'static str| -> Result<Option<UnixTime>, ReleaseError> {
            p.get_str(field)
                .map(|v| {
                    UnixTime::parse_rfc2822(v).ok_or_else(|| ReleaseError::BadDate {
                        field,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let list = |field| {
            p.get_str(field)
                .map(|v| v.split_whitespace().collect())
                .unwrap_or_default()
        };
        let mut sha256 = Vec::new();
        for line in p.get_str("SHA256").unwrap_or("").lines() {
            let line = line.trim();
            if !line.is_empty() {
                sha256.push(parse_entry(line)?);
            }
        }
        Ok(Release {
            origin: p.get_str("Origin"),
            suite: p.get_str("Suite"),
            codename: p.get_str("Codename"),
            date: date("Date")?,
            valid_until: date("Valid-Until")?,
            architectures: list("Architectures"),
            components: list("Components"),
            acquire_by_hash: p
                .get_str("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }

    /// Suite, else Codename, for messages.
    fn name(&self) -> String {
        self.suite.or(self.codename).unwrap_or("?").to_string()
    }

    /// The SHA256 table entry for `path` (relative to the suite directory).
    pub(crate) fn file(&self, path: &str) -> Option<&FileEntry<'a>> {
        self.sha256.iter().find(|e| e.path == path)
    }

    /// `component/binary-arch/Packages`, preferring `.xz`, then `.gz`, then plain.
    pub(crate) fn packages_index(
        &self,
        component: &str,
        arch: &str,
    ) -> Result<Index<'_, 'a>, ReleaseError> {
        if !self.components.is_empty() && !self.components.contains(&component) {
            return Err(ReleaseError::NoComponent {
                suite: self.name(),
                component: component.to_string(),
                have: self.components.join(" "),
            });
        }
        if !self.architectures.is_empty() && !self.architectures.contains(&arch) {
            return Err(ReleaseError::NoArchitecture {
                suite: self.name(),
                arch: arch.to_string(),
                have: self.architectures.join(" "),
            });
        }
        let base = format!("{component}/binary-{arch}/Packages");
        PREFERRED
            .iter()
            .find_map(|(compression, ext)| {
                self.file(&format!("{base}{ext}")).map(|entry| Index {
                    entry,
                    compression: *compression,
                })
            })
            .ok_or(ReleaseError::NoIndex {
                suite: self.name(),
                path: base,
            })
    }

    /// Where to download `entry` from, relative to the suite directory: its by-hash
    /// path when the archive publishes one, else its plain path.
    pub(crate) fn download_path(&self, entry: &FileEntry<'_>) -> String {
        if !self.acquire_by_hash {
            return entry.path.to_string();
        }
        let dir = entry.path.rsplit_once('/').map_or("", |(d, _)| d);
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        format!("{prefix}by-hash/SHA256/{}", entry.sha256.hex())
    }

    /// Refuses a Release past its Valid-Until (a stale mirror, or an attacker
    /// replaying old signed metadata to hold back security updates), or dated more
    /// than [`MAX_FUTURE_SECS`] ahead of `now`.
    pub(crate) fn check_fresh(&self, now: UnixTime) -> Result<(), ReleaseError> {
        if let Some(valid_until) = self.valid_until {
            if now > valid_until {
                return Err(ReleaseError::Expired {
                    suite: self.name(),
                    valid_until,
                    now,
                });
            }
        }
        if let Some(date) = self.date {
            if date.0 > now.0 + MAX_FUTURE_SECS {
                return Err(ReleaseError::NotYetValid {
                    suite: self.name(),
                    date,
                    now,
                });
            }
        }
        Ok(())
    }

    /// Refuses a Release for another suite than the one asked for: a correctly
    /// signed Release of, say, oldstable served in place of stable is a downgrade.
    pub(crate) fn check_suite(&self, want: &str) -> Result<(), ReleaseError> {
        if self.suite == Some(want) || self.codename == Some(want) {
            return Ok(());
        }
        Err(ReleaseError::WrongSuite {
            want: want.to_string(),
            suite: self.suite.unwrap_or("").to_string(),
            codename: self.codename.unwrap_or("").to_string(),
        })
    }
}

/// ` <sha256> <size> <path>`.
fn parse_entry(line: &str) -> Result<FileEntry<'_>, ReleaseError> {
    let bad = |reason: &str| ReleaseError::BadEntry {
        line: line.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = line.split_whitespace();
    let (Some(hash), Some(size), Some(path), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("want `sha256 size path`"));
    };
    let sha256 = hash.parse().map_err(|_| bad("not a sha256"))?;
    let size = size.parse().map_err(|_| bad("size is not a number"))?;
    if path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("path leaves the suite directory"));
    }
    Ok(FileEntry { sha256, size, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> String {
        Digest::of(s.as_bytes()).hex()
    }

    fn release() -> String {
        format!(
            "Origin: Debian\n\
             Label: Debian\n\
             Suite: stable\n\
             Version: 12.11\n\
             Codename: bookworm\n\
             Changelogs: https://metadata.example/changelogs/@CHANGEPATH@_changelog\n\
             Date: Sat, 17 May 2025 08:57:41 UTC\n\
             Valid-Until: Sat, 24 May 2025 08:57:41 +0000\n\
             Acquire-By-Hash: yes\n\
             No-Support-for-Architecture-all: Packages\n\
             Architectures: all amd64 arm64\n\
             Components: main contrib non-free-firmware\n\
             Description: Debian 12.11 Released 17 May 2025\n\
             MD5Sum:\n 0123456789abcdef0123456789abcdef 1234 main/binary-amd64/Packages\n\
             SHA256:\n \
             {} 45678 main/binary-amd64/Packages\n \
             {} 9012 main/binary-amd64/Packages.gz\n \
             {} 7890 main/binary-amd64/Packages.xz\n \
             {} 100 main/binary-arm64/Packages\n \
             {} 200 contrib/binary-amd64/Packages.gz\n \
             {} 117 main/binary-amd64/Release\n",
            h("plain"),
            h("gz"),
            h("xz"),
            h("arm"),
            h("contrib"),
            h("rel"),
        )
    }

    #[test]
    fn parses_fields() {
        let text = release();
        let r = Release::parse(&text).unwrap();
        assert_eq!(r.origin, Some("Debian"));
        assert_eq!(r.suite, Some("stable"));
        assert_eq!(r.codename, Some("bookworm"));
        assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(r.components, ["main", "contrib", "non-free-firmware"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 6);
        assert_eq!(r.date.unwrap().to_string(), "2025-05-17 08:57:41 UTC");
        assert_eq!(r.valid_until.unwrap().0 - r.date.unwrap().0, 7 * 86400);
        let e = r.file("main/binary-amd64/Release").unwrap();
        assert_eq!((e.size, e.sha256), (117, Digest::of(b"rel")));
        assert!(r.file("main/binary-amd64/Packages.bz2").is_none());
    }

    #[test]
    fn prefers_xz_then_gz_then_plain() {
        let text = release();
        let r = Release::parse(&text).unwrap();
        let i = r.packages_index("main", "amd64").unwrap();
        assert_eq!(i.compression, Compression::Xz);
        assert_eq!(i.entry.path, "main/binary-amd64/Packages.xz");
        assert_eq!(i.entry.size, 7890);
        assert_eq!(i.entry.sha256, Digest::of(b"xz"));
        let i = r.packages_index("contrib", "amd64").unwrap();
        assert_eq!(i.compression, Compression::Gzip);
        let i = r.packages_index("main", "arm64").unwrap();
        assert_eq!(i.compression, Compression::None);
        assert_eq!(i.entry.path, "main/binary-arm64/Packages");
    }

    #[test]
    fn missing_indices_are_named() {
        let text = release();
        let r = Release::parse(&text).unwrap();
        let e = r.packages_index("non-free-firmware", "amd64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Release for stable lists no non-free-firmware/binary-amd64/Packages(.xz|.gz) in its SHA256 table"
        );
        let e = r.packages_index("universe", "amd64").unwrap_err();
        assert!(
            e.to_string()
                .contains("no component \"universe\" (has: main contrib non-free-firmware)"),
            "{e}"
        );
        let e = r.packages_index("main", "riscv64").unwrap_err();
        assert!(e.to_string().contains("no architecture \"riscv64\""), "{e}");
    }

    #[test]
    fn by_hash_download_paths() {
        let text = release();
        let mut r = Release::parse(&text).unwrap();
        let entry = r.packages_index("main", "amd64").unwrap().entry.clone();
        assert_eq!(
            r.download_path(&entry),
            format!("main/binary-amd64/by-hash/SHA256/{}", h("xz"))
        );
        r.acquire_by_hash = false;
        assert_eq!(r.download_path(&entry), "main/binary-amd64/Packages.xz");
    }

    #[test]
    fn validity_window() {
        let text = release();
        let r = Release::parse(&text).unwrap();
        let date = r.date.unwrap();
        let until = r.valid_until.unwrap();
        assert!(r.check_fresh(date).is_ok());
        assert!(
            r.check_fresh(until).is_ok(),
            "valid through the Valid-Until second"
        );
        let e = r.check_fresh(UnixTime(until.0 + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Release for stable expired at 2025-05-24 08:57:41 UTC (now 2025-05-24 08:57:42 UTC); \
             the mirror is stale or replaying old metadata"
        );
        assert!(r.check_fresh(UnixTime(date.0 - MAX_FUTURE_SECS)).is_ok());
        assert!(matches!(
            r.check_fresh(UnixTime(date.0 - MAX_FUTURE_SECS - 1)),
            Err(ReleaseError::NotYetValid { .. })
        ));
        // Without the fields there is nothing to check.
        let bare = Release::parse("Suite: x\n").unwrap();
        assert!(bare.check_fresh(UnixTime(i64::MAX / 2)).is_ok());
        assert!(bare.check_fresh(UnixTime(0)).is_ok());
    }

    #[test]
    fn suite_check() {
        let text = release();
        let r = Release::parse(&text).unwrap();
        assert!(r.check_suite("stable").is_ok());
        assert!(r.check_suite("bookworm").is_ok());
        let e = r.check_suite("trixie").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Release is for suite \"stable\" / codename \"bookworm\", not \"trixie\""
        );
    }

    #[test]
    fn rejects_armored_and_malformed_input() {
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{}",
            release()
        );
        assert!(matches!(
            Release::parse(&signed),
            Err(ReleaseError::StillSigned)
        ));
        assert!(matches!(
            Release::parse("Suite: a\n\nSuite: b\n"),
            Err(ReleaseError::Paragraphs(2))
        ));
        assert!(matches!(
            Release::parse(""),
            Err(ReleaseError::Paragraphs(0))
        ));
        assert!(matches!(
            Release::parse("Suite: a\nnot a field\n"),
            Err(ReleaseError::Syntax(_))
        ));
        let e = Release::parse("Date: yesterday\n").unwrap_err();
        assert!(e.to_string().contains("bad Date date \"yesterday\""), "{e}");
        let e = Release::parse("Valid-Until: 32 May 2025 00:00:00 UTC\n").unwrap_err();
        assert!(matches!(
            e,
            ReleaseError::BadDate {
                field: "Valid-Until",
                ..
            }
        ));
        for (line, reason) in [
            (format!("{} 1", h("a")), "want `sha256 size path`"),
            (format!("{} 1 a b", h("a")), "want `sha256 size path`"),
            ("abc 1 main/x".to_string(), "not a sha256"),
            (format!("{} -1 main/x", h("a")), "size is not a number"),
            (format!("{} 1 ../../etc/passwd", h("a")), "leaves the suite"),
            (format!("{} 1 /etc/passwd", h("a")), "leaves the suite"),
            (format!("{} 1 main//x", h("a")), "leaves the suite"),
        ] {
            let text = format!("Suite: s\nSHA256:\n {line}\n");
            let e = Release::parse(&text).unwrap_err().to_string();
            assert!(e.contains(reason), "{e} lacks {reason}");
        }
    }

    #[test]
    fn parses_rfc2822_dates() {
        let t = |s: &str| UnixTime::parse_rfc2822(s).map(|t| t.0);
        assert_eq!(t("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(t("1 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(t("Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(t("Wed, 31 Dec 1969 19:00:00 -0500"), Some(0));
        assert_eq!(t("Sat, 17 May 2025 08:57:41 UTC"), Some(1747472261));
        assert_eq!(t("Sat, 17 May 2025 08:57 UTC"), Some(1747472220));
        assert_eq!(t("Sat, 17 May 2025 08:57:41"), Some(1747472261));
        assert_eq!(t("29 Feb 2024 12:00:00 UTC"), Some(1709208000));
        assert_eq!(t("29 Feb 2023 12:00:00 UTC"), None);
        assert_eq!(t("17 Foo 2025 08:57:41 UTC"), None);
        assert_eq!(t("17 May 25 08:57:41 UTC"), None);
        assert_eq!(t("17 May 2025 24:00:00 UTC"), None);
        assert_eq!(t("17 May 2025 08:57:41 CEST"), None);
        assert_eq!(t("17 May 2025 08:57:41 UTC extra"), None);
        assert_eq!(t(""), None);
        for secs in [0, 951782400, 1747472261, 4102444800, -86400] {
            let shown = UnixTime(secs).to_string();
            let back = UnixTime::parse_rfc2822(&{
                // "YYYY-MM-DD HH:MM:SS UTC" → "DD Mon YYYY HH:MM:SS UTC"
                let (date, rest) = shown.split_once(' ').unwrap();
                let mut ymd = date.split('-');
                let (y, m, d) = (
                    ymd.next().unwrap(),
                    ymd.next().unwrap(),
                    ymd.next().unwrap(),
                );
                let mon = [
                    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                    "Dec",
                ][m.parse::<usize>().unwrap() - 1];
                format!("{d} {mon} {y} {rest}")
            });
            assert_eq!(back, Some(UnixTime(secs)), "{shown}");
        }
        assert!(UnixTime::now().0 > 1_700_000_000);
    }
}
