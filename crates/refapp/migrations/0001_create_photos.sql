-- Photos uploaded through POST /photos. The worker fills in renditions.
CREATE TABLE photos (
    id            uuid PRIMARY KEY,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'rendered', 'failed')),
    original_key  text NOT NULL UNIQUE,
    content_type  text NOT NULL,
    width         integer NOT NULL CHECK (width > 0),
    height        integer NOT NULL CHECK (height > 0),
    bytes         bigint NOT NULL CHECK (bytes > 0),
    renditions    jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rendered_at   timestamptz
);

CREATE INDEX photos_created_at_idx ON photos (created_at DESC);
