//! OCI image references: `[REGISTRY/]REPOSITORY[:TAG][@sha256:HEX]`, parsed as Docker
//! and podman parse them (distribution's `reference` grammar, simplified to what a
//! registry accepts).
//!
//! Invariants: a name with a `/`, `:` or `@` is a reference; a bare name is a catalog
//! name (`locker pull ubuntu` looks in the catalog, never on a registry). The first
//! component is the registry when it has a `.` or `:` or is `localhost`; otherwise the
//! registry is Docker Hub's `docker.io` and a one-component repository gets `library/`
//! in front, as Docker does. A reference always names a tag (default `latest`) or a
//! digest.

use std::fmt;

use crate::store::digest::Digest;

/// The registry Docker assumes when a reference names none.
pub(crate) const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// Host, with `:port` when one was given.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad image reference {input:?}: {reason}; write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")]
pub(crate) struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A catalog name never contains these; a reference always does (or is `host/repo`).
pub(crate) fn is_reference(name: &str) -> bool {
    name.contains(['/', ':', '@'])
}

impl Reference {
    pub(crate) fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let bad = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:HEX"))?;
                let digest: Digest = hex
                    .parse()
                    .map_err(|_| bad("the digest is not 64 hex digits"))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A `:` after the last `/` starts the tag (a `:` before it is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad(
                "the registry is not a host name with an optional :port",
            ));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "repository components are lower-case letters, digits and . _ - separated by /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is fetched by: the digest when pinned, else the tag.
    pub(crate) fn lookup(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("sha256:{}", d.hex()),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The reference without a digest: `registry/repository:tag`, the image's name.
    pub(crate) fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
            None => format!("{}/{}", self.registry, self.repository),
        }
    }

    /// The base URL of the registry's API. Loopback registries speak plain HTTP (the
    /// traffic never leaves the machine, as Docker's default insecure 127.0.0.0/8);
    /// all others HTTPS.
    pub(crate) fn api_base(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    self.registry.as_str()
                }
            });
        let loopback = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{}", d.hex())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn docker_hub_short_names() {
        let r = Reference::parse("ubuntu:18.04").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/ubuntu");
        assert_eq!(r.tag.as_deref(), Some("18.04"));
        let r = Reference::parse("docker.io/library/ubuntu:18.04").unwrap();
        assert_eq!(r.name(), "docker.io/library/ubuntu:18.04");
        let r = Reference::parse("team/app").unwrap();
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn registry_port_tag_and_digest() {
        let r = Reference::parse(&format!("127.0.0.1:5000/team/img:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/img");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.unwrap().hex(), HEX);
        assert_eq!(r.lookup(), format!("sha256:{HEX}"));
        assert_eq!(r.api_base(), "http://127.0.0.1:5000/v2/team/img");
        let r = Reference::parse(&format!("registry.example:5000/img@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert!(r
            .api_base()
            .starts_with("https://registry.example:5000/v2/img"));
        let r = Reference::parse("localhost/img").unwrap();
        assert_eq!(r.registry, "localhost");
        assert!(r.api_base().starts_with("http://"));
    }

    #[test]
    fn bad_references() {
        for bad in [
            "Upper/case",
            "host/repo:",
            "host/repo@sha1:abc",
            "host/repo@sha256:12",
            "host/re..po/",
            "host//repo",
            "host/repo:-tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalog_names_are_not_references() {
        assert!(!is_reference("ubuntu-18.04"));
        assert!(!is_reference("bionic"));
        assert!(is_reference("ubuntu:18.04"));
        assert!(is_reference("quay.io/x/y"));
    }
}
