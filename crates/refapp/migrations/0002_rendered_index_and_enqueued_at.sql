-- When the render job was (last) published; the worker's sweeper re-enqueues
-- pending photos whose job was lost (crash between INSERT and publish).
ALTER TABLE photos ADD COLUMN enqueued_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX photos_pending_enqueued_idx ON photos (enqueued_at) WHERE status = 'pending';
