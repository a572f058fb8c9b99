-- Example images of verbs (issue 13): the CLIP image features of each example's human,
-- object and union crops, not the image itself, keyed by the image tower's fingerprint
-- (as text embeddings are), so verb rows can be recomputed as examples come and go.
CREATE TABLE verb_examples (
    id          INTEGER PRIMARY KEY,
    verb_id     INTEGER NOT NULL REFERENCES verbs (id) ON DELETE CASCADE,
    object_id   INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    -- Identifies the source image (a checksum of its bytes): the person row takes each
    -- image's mean human-crop feature once.
    image       TEXT NOT NULL,
    -- JSON [x1, y1, x2, y2] in the image's pixels.
    human_box   TEXT NOT NULL,
    object_box  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- little-endian f32 values, one CLIP image embedding each (not normalised)
    human       BLOB NOT NULL,
    object      BLOB NOT NULL,
    union_crop  BLOB NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX verb_examples_by_verb ON verb_examples (verb_id);
