//! A service target as users write it and configs keep it: `HOST:PORT`.

use crate::error::Fail;

/// Splits `HOST:PORT` (IPv6 hosts in brackets), refusing anything else.
pub fn parse_target(target: &str) -> Result<(String, u16), Fail> {
    let bad = || {
        Fail::Usage(format!(
            "Invalid target {target:?}: use HOST:PORT, e.g. localhost:5432"
        ))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(
            parse_target("localhost:5432").ok(),
            Some(("localhost".into(), 5432))
        );
        assert_eq!(parse_target("[::1]:80").ok(), Some(("::1".into(), 80)));
        for bad in ["localhost", ":80", "host:0", "host:99999", "a b:1"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
