-- The relay of the hub whose stream an agent holds: joins of its shares relay there.
ALTER TABLE agents ADD COLUMN home_relay TEXT;
