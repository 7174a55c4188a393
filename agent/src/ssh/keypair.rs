//! The share's key pair, made with the `ssh-key` crate and stored only in OpenSSH's own
//! encrypted format (aes256-ctr under bcrypt-pbkdf), which the hub cannot open.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot make an SSH key: {0}")]
    Generate(ssh_key::Error),
    #[error("the hub sent an SSH key that is not in OpenSSH format")]
    Format,
    #[error("Wrong password for the share's SSH key")]
    WrongPassword,
}

/// A new key pair: the public line for `authorized_keys` (without comment) and the
/// private key encrypted under `password`.
pub struct NewKey {
    pub public: String,
    pub encrypted: String,
}

pub fn generate(password: &str) -> Result<NewKey, KeyError> {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
    let public = key.public_key().to_openssh().map_err(KeyError::Generate)?;
    let encrypted = key
        .encrypt(&mut OsRng, password)
        .and_then(|k| k.to_openssh(LineEnding::LF))
        .map_err(KeyError::Generate)?;
    Ok(NewKey {
        public,
        encrypted: encrypted.to_string(),
    })
}

/// The plain private key, in the form `ssh -i` reads.
pub fn decrypt(encrypted: &str, password: &str) -> Result<zeroize::Zeroizing<String>, KeyError> {
    let key = PrivateKey::from_openssh(encrypted).map_err(|_| KeyError::Format)?;
    let plain = key.decrypt(password).map_err(|_| KeyError::WrongPassword)?;
    plain
        .to_openssh(LineEnding::LF)
        .map_err(|_| KeyError::Format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_opens_with_its_password_only() {
        let Ok(key) = generate("correct horse") else {
            panic!("cannot generate");
        };
        assert!(key.public.starts_with("ssh-ed25519 "));
        assert!(key.encrypted.contains("BEGIN OPENSSH PRIVATE KEY"));
        assert!(PrivateKey::from_openssh(&key.encrypted).is_ok_and(|k| k.is_encrypted()));
        assert!(decrypt(&key.encrypted, "correct horse").is_ok());
        assert!(matches!(
            decrypt(&key.encrypted, "wrong horse"),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(decrypt("garbage", "x"), Err(KeyError::Format)));
    }
}
