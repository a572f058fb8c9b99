-- The open vocabulary: packs of interactions (verb x object + CLIP prompt), and a cache
-- of text embeddings keyed by (model fingerprint, exact prompt).

CREATE TABLE packs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    origin      TEXT NOT NULL CHECK (origin IN ('seed', 'user')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE verbs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    ing         TEXT NOT NULL,
    origin      TEXT NOT NULL CHECK (origin IN ('seed', 'user')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE objects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    -- Prompt of the object classifier row ("a photo of a bicycle").
    prompt      TEXT NOT NULL,
    origin      TEXT NOT NULL CHECK (origin IN ('seed', 'user')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE interactions (
    id          INTEGER PRIMARY KEY,
    pack_id     INTEGER NOT NULL REFERENCES packs (id) ON DELETE CASCADE,
    verb_id     INTEGER NOT NULL REFERENCES verbs (id) ON DELETE CASCADE,
    -- NULL: no object role (V-COCO's "a photo of a person sitting").
    object_id   INTEGER REFERENCES objects (id) ON DELETE CASCADE,
    prompt      TEXT NOT NULL,
    -- Row of the pack's official classifier (seed entries), so trained rows line up.
    seed_index  INTEGER,
    origin      TEXT NOT NULL CHECK (origin IN ('seed', 'user')),
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (pack_id, verb_id, object_id),
    UNIQUE (pack_id, seed_index)
);

-- Official row order of each pack's verbs and objects (for trained verb/object rows).
CREATE TABLE pack_verbs (
    pack_id     INTEGER NOT NULL REFERENCES packs (id) ON DELETE CASCADE,
    verb_id     INTEGER NOT NULL REFERENCES verbs (id) ON DELETE CASCADE,
    seed_index  INTEGER NOT NULL,
    PRIMARY KEY (pack_id, seed_index)
);

CREATE TABLE pack_objects (
    pack_id     INTEGER NOT NULL REFERENCES packs (id) ON DELETE CASCADE,
    object_id   INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    seed_index  INTEGER NOT NULL,
    PRIMARY KEY (pack_id, seed_index)
);

CREATE TABLE text_embeddings (
    fingerprint TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    -- little-endian f32 values
    embedding   BLOB NOT NULL,
    PRIMARY KEY (fingerprint, prompt)
);

-- One row: bumped by every vocabulary change, reported with every detection.
CREATE TABLE vocabulary_version (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL
);
INSERT INTO vocabulary_version (id, version) VALUES (1, 0);
