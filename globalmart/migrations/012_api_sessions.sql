-- Dashboard sessions: a browser exchanges an API key once for a short-lived session cookie, so
-- the key leaves the address bar, the history and the Referer headers. Only the SHA-256 of the
-- cookie is stored; revoking the key ends its sessions.
CREATE TABLE IF NOT EXISTS api.sessions (
    token_hash text PRIMARY KEY,
    key_hash   text NOT NULL REFERENCES api.api_keys (key_hash),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON api.sessions (expires_at);
