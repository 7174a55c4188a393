-- `share --ssh`: the account joiners log in as, and the private key encrypted on the
-- sharing machine (OpenSSH format). `--ssh-once` keys are cleared at their first download;
-- every key is deleted when its share ends.
ALTER TABLE shares ADD COLUMN ssh_user TEXT;
CREATE TABLE ssh_keys (
    share_lookup  TEXT PRIMARY KEY,
    encrypted_key TEXT,
    once          BIGINT NOT NULL
);
