//! Entry points for the fuzz targets in `agent/fuzz` (cargo-fuzz builds them apart, with
//! the `fuzzing` feature) and for the suite's replay of their corpus: each takes what a
//! user types or a file on disk holds and runs it through one of the agent's readers.

use crate::code::ShareCode;
use crate::config::{Config, LocalShare};
use crate::ssh::authorized_keys::{with_line, without_marker};

/// Share codes as users type them: parsing never panics, and a code that parses prints
/// as one that parses to the same code, with the same lookup value.
pub fn share_code(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(code) = ShareCode::parse(text) else {
        return;
    };
    let again = ShareCode::parse(&code.to_string());
    assert_eq!(
        again.map(|c| c.lookup()),
        Some(code.lookup()),
        "{text:?} printed as {code} does not parse back"
    );
}

/// `authorized_keys` as an account holds it: adding a share's line and taking it out
/// again gives back every byte of a file that ended with a newline (or was empty), and
/// never touches another line.
pub fn authorized_keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let marker = "connect-share:0123456789abcdef";
    let line = format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzz {marker}");
    let Some(added) = with_line(text, &line, marker) else {
        // The marker is there already; taking it out leaves no line with it.
        let removed = without_marker(text, marker).unwrap_or_default();
        assert!(
            removed
                .lines()
                .all(|l| l.split_whitespace().last() != Some(marker))
        );
        return;
    };
    let removed = without_marker(&added, marker);
    if text.is_empty() || text.ends_with('\n') {
        assert_eq!(removed.as_deref(), Some(text));
    }
}

/// The agent's files as it reads them back: `config.toml`, `shares.json` and
/// `services.json`. Reading never panics; what reads writes back to what reads the same.
pub fn config_files(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = toml::from_str::<Config>(text)
        && let Ok(written) = toml::to_string(&config)
    {
        let again = toml::from_str::<Config>(&written).map(|c| toml::to_string(&c).ok());
        assert_eq!(again.ok().flatten().as_deref(), Some(written.as_str()));
    }
    if let Ok(shares) = serde_json::from_slice::<Vec<LocalShare>>(data) {
        let written = serde_json::to_vec(&shares).unwrap_or_default();
        assert!(serde_json::from_slice::<Vec<LocalShare>>(&written).is_ok());
    }
    if let Ok(services) = serde_json::from_slice::<Vec<connect_api::Route>>(data) {
        for route in &services {
            let _ = connect_api::route_problem(route);
            let _ = crate::target::parse_target(&route.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fuzz_target_runs_its_corpus() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (target, run) in [
            ("share_code", share_code as fn(&[u8])),
            ("authorized_keys", authorized_keys),
            ("config_files", config_files),
        ] {
            let mut inputs = 0;
            for entry in std::fs::read_dir(corpus.join(target))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    run(&bytes);
                    inputs += 1;
                }
            }
            assert!(inputs > 0, "no corpus for {target}");
        }
    }
}
