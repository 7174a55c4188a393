//! The hub's public URL and the `Host` headers that name shares: every split of a URL or
//! an authority into host and port goes through the `http` crate's parser here, so the
//! share URLs the API returns, the relay host agents dial and the share the proxy picks
//! cannot disagree about where a host ends (IPv6 literals included).

use std::fmt;
use std::str::FromStr;

use axum::http::Uri;
use axum::http::uri::Authority;

/// `--public-url`, parsed once at startup so a bad one is refused before the hub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    text: String,
    https: bool,
    /// As written, with brackets around an IPv6 literal.
    host: String,
    /// Only when written and not the scheme's default.
    port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a URL like https://hub.example.com[:PORT]")]
pub struct BadPublicUrl(String);

impl FromStr for PublicUrl {
    type Err = BadPublicUrl;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPublicUrl(text.to_owned());
        let uri: Uri = text.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        // Only `HOST` or `HOST:PORT`: no user info, no port that is not a number.
        let written = match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        if authority.host().is_empty() || written != authority.as_str() {
            return Err(bad());
        }
        let default_port = if https { 443 } else { 80 };
        Ok(Self {
            text: text.to_owned(),
            https,
            host: authority.host().to_owned(),
            port: authority.port_u16().filter(|&port| port != default_port),
        })
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PublicUrl {
    /// Cookies for this hub are `Secure`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host agents dial, IPv6 literals in brackets (ready for `HOST:PORT`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `SCHEME://NAME.DOMAIN[:PORT]`: a share's public URL follows the hub's scheme and
    /// port, since it is the same listener that serves it.
    pub fn share_url(&self, name: &str, domain: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{name}.{domain}:{port}"),
            None => format!("{scheme}://{name}.{domain}"),
        }
    }
}

/// The share name in a `Host` header of `NAME.DOMAIN[:PORT]`, lowercased, if it is one.
pub fn share_name(host_header: &str, domain: &str) -> Option<String> {
    let authority: Authority = host_header.parse().ok()?;
    let host = authority.host().to_ascii_lowercase();
    let name = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!name.is_empty() && !name.contains('.')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> PublicUrl {
        text.parse().expect("valid public URL")
    }

    #[test]
    fn share_urls_follow_the_hubs_scheme_and_port() {
        let cases = [
            ("http://hub.test:7070", "http://n.share.test:7070"),
            ("http://hub.test:80/", "http://n.share.test"),
            ("https://hub.test", "https://n.share.test"),
            ("https://hub.test:443", "https://n.share.test"),
            ("https://hub.test:8443/api", "https://n.share.test:8443"),
            ("http://[::1]:7070", "http://n.share.test:7070"),
        ];
        for (public, share) in cases {
            assert_eq!(url(public).share_url("n", "share.test"), share, "{public}");
        }
    }

    #[test]
    fn the_relay_host_keeps_ipv6_brackets() {
        assert_eq!(url("http://[::1]:7070").host(), "[::1]");
        assert_eq!(url("https://hub.example.com").host(), "hub.example.com");
        assert_eq!(url("http://127.0.0.1:7070/").host(), "127.0.0.1");
    }

    #[test]
    fn what_is_not_a_public_url_is_refused() {
        for text in [
            "",
            "hub.test",
            "ftp://hub.test",
            "http://",
            "http://u@hub.test",
            "http://h:x",
        ] {
            assert!(text.parse::<PublicUrl>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn share_names_come_from_one_label_under_the_domain() {
        let domain = "share.localhost";
        let name = |host| share_name(host, domain);
        assert_eq!(
            name("frosty-weasel-0857.share.localhost").as_deref(),
            Some("frosty-weasel-0857")
        );
        assert_eq!(
            name("Frosty-Weasel-0857.Share.Localhost:7070").as_deref(),
            Some("frosty-weasel-0857")
        );
        for other in [
            "share.localhost",
            "a.b.share.localhost",
            "hub.example.com",
            "evilshare.localhost",
            "[::1]:7070",
            "",
            "a b",
        ] {
            assert_eq!(name(other), None, "{other:?}");
        }
    }
}
