-- API keys of the REST API: only the SHA-256 of each key is stored; the key itself is shown
-- once, by `globalmart apikey create NAME`.
CREATE SCHEMA IF NOT EXISTS api;

CREATE TABLE IF NOT EXISTS api.api_keys (
    key_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    key_prefix text NOT NULL,                 -- first characters, to recognise a key in lists
    key_hash   text NOT NULL UNIQUE,          -- hex SHA-256 of the whole key
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
-- One active key per name; revoked keys stay for the record.
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name_idx
    ON api.api_keys (name) WHERE revoked_at IS NULL;
