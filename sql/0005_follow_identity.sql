-- issue 13: a followed file is identified by what it is (device, inode and a fingerprint of its
-- first bytes), not by where it is, so a file read as x_json.log and renamed to x_json.log.1 is
-- never read again, whatever the globs match. `path` is only where the file was last read.
-- `first_seen` (the follower's clock) tells rotated files written since following began from
-- older ones; `gone_since` starts the grace period after which a vanished file is forgotten.
ALTER TABLE follow_offsets DROP CONSTRAINT follow_offsets_pkey;
-- Two paths once read through the same file (a hard link): keep the one read last.
DELETE FROM follow_offsets a USING follow_offsets b
 WHERE a.dev = b.dev AND a.inode = b.inode AND (a.updated_at, a.path) < (b.updated_at, b.path);
ALTER TABLE follow_offsets
    ADD PRIMARY KEY (dev, inode),
    ADD COLUMN fp_len integer NOT NULL DEFAULT 0,
    ADD COLUMN fingerprint bytea NOT NULL DEFAULT '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    ADD COLUMN first_seen timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN gone_since timestamptz;
