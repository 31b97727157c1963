-- Which readings partition each site's records arrive on, per readings topic: a stream worker given
-- a partition reads those sites' rows of stock_latest to rebuild its in-memory state (there is no
-- changelog topic; stock_latest is the durable latest state). Written in the same transaction as the
-- batch in which a worker first saw the site.
CREATE TABLE IF NOT EXISTS stream_sites (
    topic      text NOT NULL,      -- the readings topic (with its prefix)
    site_id    text NOT NULL,
    partition  integer NOT NULL,
    PRIMARY KEY (topic, site_id)
);
CREATE INDEX IF NOT EXISTS stream_sites_partition ON stream_sites (topic, partition);
