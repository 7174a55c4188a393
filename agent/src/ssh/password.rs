//! Passwords for the share's SSH key: asked on the terminal (twice when making one), or
//! read from `--ssh-password-file` / `CONNECT_SSH_PASSWORD` for scripts.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Fail;

/// bcrypt-pbkdf slows guessing, but a hub that leaks keys still allows offline guesses.
const MIN_LEN: usize = 8;
pub const ENV: &str = "CONNECT_SSH_PASSWORD";

/// The password for a new key: the first line of `file`, else asked twice.
pub fn new_password(file: Option<&Path>) -> Result<Zeroizing<String>, Fail> {
    let password = match file {
        Some(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(Fail::io(format!(
                "cannot read --ssh-password-file {}",
                path.display()
            )))?);
            Zeroizing::new(text.lines().next().unwrap_or_default().to_owned())
        }
        None => {
            let first = ask("Password for the share's SSH key: ")?;
            let again = ask("Same password again: ")?;
            if first != again {
                return Err(Fail::Usage("the two passwords differ".into()));
            }
            first
        }
    };
    if password.chars().count() < MIN_LEN {
        return Err(Fail::Usage(format!(
            "the SSH key password must have at least {MIN_LEN} characters"
        )));
    }
    Ok(password)
}

/// The password to open a share's key: `CONNECT_SSH_PASSWORD`, else asked once.
pub fn join_password() -> Result<Zeroizing<String>, Fail> {
    match std::env::var(ENV) {
        Ok(password) => Ok(Zeroizing::new(password)),
        Err(_) => ask("Password for the share's SSH key: "),
    }
}

fn ask(prompt: &str) -> Result<Zeroizing<String>, Fail> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|_| {
            Fail::Usage(format!(
                "no terminal to ask for the SSH key password; use --ssh-password-file or {ENV}"
            ))
        })
}
