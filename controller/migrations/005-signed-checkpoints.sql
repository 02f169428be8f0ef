-- Version 5: checkpoints may be signed.
--
-- A campaign run with `--sign-with KEY` signs each checkpoint with an Ed25519 key kept outside the record, so a
-- rewrite of the chain together with its checkpoints is caught by `lab verify --public-key`. The signature covers
-- the text `record::signing::message` builds from `journal_id`, `hash`, `made_at` and `reason`. Unsigned checkpoints
-- (every checkpoint before this version, and campaigns run without a key) leave both columns empty.

ALTER TABLE checkpoints ADD COLUMN public_key TEXT;
ALTER TABLE checkpoints ADD COLUMN signature TEXT;
