//! The entry point for the fuzz target in `coordinator/api/fuzz` (cargo-fuzz builds it
//! apart, with the `fuzzing` feature) and for the suite's replay of its corpus.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::*;

/// Decodes `json` as `T`; what decodes encodes to something that decodes to the same.
fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(json).ok()?;
    let encoded = serde_json::to_value(&value).ok()?;
    let again: T = serde_json::from_value(encoded.clone()).ok()?;
    assert_eq!(serde_json::to_value(&again).ok(), Some(encoded));
    Some(value)
}

/// Every body the hub and agents read from each other: the first byte picks the type,
/// the rest is the JSON. Decoding never panics; what decodes survives a round trip; the
/// checks both sides apply (routes, account names, durations) never panic either.
pub fn api_body(data: &[u8]) {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => {
            if let Some(route) = round_trip::<Route>(json) {
                let _ = route_problem(&route);
            }
        }
        1 => {
            if let Some(request) = round_trip::<CreateShareRequest>(json) {
                for route in &request.routes {
                    let _ = route_problem(route);
                }
                if let Some(ssh) = &request.ssh {
                    let _ = is_account_name(&ssh.user);
                }
            }
        }
        2 => {
            if let Some(response) = round_trip::<JoinResponse>(json) {
                let _ = in_overlay(response.machine_ip);
                if let Some(user) = &response.ssh_user {
                    let _ = is_account_name(user);
                }
            }
        }
        3 => drop(round_trip::<StreamEvent>(json)),
        4 => drop(round_trip::<RegisterRequest>(json)),
        5 => drop(round_trip::<JoinRequest>(json)),
        6 => drop(round_trip::<Share>(json)),
        7 => drop(round_trip::<ShareInfo>(json)),
        8 => drop(round_trip::<AgentInfo>(json)),
        9 => drop(round_trip::<ErrorBody>(json)),
        10 => drop(round_trip::<NetcheckInfo>(json)),
        _ => {
            if let Ok(text) = std::str::from_utf8(json) {
                let _ = parse_duration(text);
                let _ = is_account_name(text);
                let _ = WireKey::from_base64(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_target_runs_its_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/api_body");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                super::api_body(&bytes);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no corpus in {}", dir.display());
    }
}
